"""Test-session settings."""

from __future__ import annotations

import os

from mappings.threads import set_counting_threads

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs a worker per core: more counting threads in each would only
    # oversubscribe the cores (measured on 2 cores: the default run took 3 min 48 s
    # instead of 2 min 20 s). The `desim` processes the tests start inherit the limit.
    set_counting_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
