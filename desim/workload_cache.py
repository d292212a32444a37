"""A disk cache of captured workloads, so that a sweep captures each one once.

Capturing (build the model, prune it, run a real forward and backward pass, pack the non-zero
maps) costs as much as simulating, and most sweep axes (architecture keys, a second run's
pruning) leave a run's (workload, pruning) pair unchanged. A capture depends on nothing else,
so its key is a hash of those two specs and of the code that captures (the front end's
source, torch's version): a capture made by other code is never taken for this code's. The
file `DIR/<key>.pt` (a sweep's `DIR/cache/`, `desim run --cache DIR`) holds the whole
`Workload` (bit-packed layers, vector captures, statistics), written with `torch.save` to a
temporary name and renamed, so a killed sweep never leaves half a file and a resumed one loads
instead of recomputing. The files are trusted pickles of our own making (`weights_only=False`):
do not load a cache folder from someone else.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import torch

from desim.results import atomic_path
from mappings.model_path import file_sha256, is_file_model
from mappings.pruning import PruningSpec
from mappings.scalesim import topology_sha256
from mappings.workload import Workload, WorkloadSpec, capture_workload


@cache
def capture_code_sha256() -> str:
    """A hash of the code a capture comes from: every source file of the front end
    (`mappings`: models, pruning, training, capture, counting, the Workload it makes) and
    torch's version. A number kept in the key by hand (it reached 14) was one edit away from
    a stale capture taken for a new one; this changes with any edit, at the price of a
    capture again after edits that would not have changed it."""
    import mappings

    digest = hashlib.sha256(torch.__version__.encode())
    root = Path(mappings.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(workload: WorkloadSpec, pruning: PruningSpec) -> str:
    """Stable across processes and machines running the same code: a hash of the two
    specs' JSON (keys sorted), of the capturing code (`capture_code_sha256`), and of the
    bytes of the files the workload reads (a model from the user's file, a SCALE-Sim
    topology CSV): an edited file is another workload, never the capture of its old
    version."""
    parts = {"code": capture_code_sha256(), "workload": workload.model_dump(mode="json"),
             "pruning": pruning.model_dump(mode="json")}
    if is_file_model(workload.model):
        parts["model_file_sha256"] = file_sha256(workload.model)
    if workload.scalesim_topology is not None:
        topology = Path(workload.scalesim_topology)
        parts["topology_sha256"] = topology_sha256(topology) if topology.is_file() else None
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_or_capture(workload: WorkloadSpec, pruning: PruningSpec,
                    cache_dir: Path | str | None) -> Workload:
    """The cached capture if `cache_dir` has it, else a fresh one (then cached)."""
    torch.set_num_threads(1)  # as desim.runner.run: the same numbers as a single run
    if cache_dir is None:
        return capture_workload(workload, pruning)
    path = Path(cache_dir) / f"{cache_key(workload, pruning)}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=False)
        except Exception:  # noqa: BLE001 - unreadable (another torch, a full disk): recompute
            cached = None
        if isinstance(cached, Workload):  # else a file of another program's: recompute
            return cached
    captured = capture_workload(workload, pruning)
    try:
        _save_atomic(path, captured)
    except OSError:
        pass  # a read-only or worker-local folder: the cache only saves time
    return captured


def _save_atomic(path: Path, workload: Workload) -> None:
    with atomic_path(path) as tmp:
        torch.save(workload, tmp)
