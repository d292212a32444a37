"""desim: transaction-level simulation of sparse DNN training accelerators.

From Python (notebooks): `desim.run("configs/experiments/quickstart.yaml") -> desim.Result`
(`desim.api`). The names load on first use, so that importing the kernel (`desim.module`)
does not import torch.
"""

from __future__ import annotations

import os
from typing import Any

# Before torch loads its OpenMP runtime: threads that wait sleep instead of spinning
# (`mappings.threads`); the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["Result", "run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from desim import api

        return getattr(api, name)
    raise AttributeError(f"module 'desim' has no attribute {name!r}")
