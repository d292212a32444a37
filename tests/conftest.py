"""Test-session settings."""

from __future__ import annotations

import os

import pytest

from mappings.threads import set_counting_threads

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs a worker per core: more counting threads in each would only
    # oversubscribe the cores (measured on 2 cores: the default run took 3 min 48 s
    # instead of 2 min 20 s). The `desim` processes the tests start inherit the limit.
    set_counting_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture
def whole_phase_tiles(monkeypatch):
    """One tile a phase, its reduction whole (or in the fewest chunks that fit) and each
    chunk one tile (every channel, image and row): for tests of what a given tile counts
    and moves, whatever the mapper's search would choose (`choose_tile` and the reduction
    plans, tested on their own)."""
    from mappings import planner
    from mappings.tiling import TileShape

    def whole(ps, win, a, n_img, n_rows, *args, **kwargs):
        return [TileShape(a, n_img, n_rows)]

    plans = planner._reduction_plans
    monkeypatch.setattr(planner, "choose_tile", whole)
    monkeypatch.setattr(planner, "_reduction_plans", lambda *a, **k: plans(*a, **k)[:1])
