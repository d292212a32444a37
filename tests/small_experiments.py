"""LeNet-300 (and LeNet-5) experiment files of a few runs on dense.yaml (seconds a run),
for the tests of what surrounds a simulation (results folders, reports, traces) rather
than its figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DENSE = str(Path(__file__).resolve().parent.parent / "configs" / "arch" / "dense.yaml")


def lenet300_experiment(path: Path, runs: dict[str, dict[str, Any]], data: str = "digits",
                        **extra: Any) -> Path:
    """`path` written as an experiment: LeNet-300 at batch 2 on `data`, one run on dense.yaml
    for each of `runs` (name: its pruning), the first the baseline; `extra`: more top-level
    keys (`observe`, ...)."""
    path.write_text(yaml.safe_dump({
        "name": "lenet300", "baseline": next(iter(runs)),
        "workload": {"model": "lenet300", "num_classes": 10, "batch": 2,
                     "input_shape": [784], "data": data, "seed": 0},
        "runs": [{"name": name, "arch": DENSE, "pruning": pruning}
                 for name, pruning in runs.items()],
        **extra}))
    return path


def lenet5_bare_experiment(path: Path, batch: int = 1, data: str = "random") -> Path:
    """`path` written as an experiment: LeNet-5 on dense.yaml as is (`dense`, the baseline)
    and without its vector unit (`bare`), which leaves 2 of its 3 vector layers (the max
    pools) out of its time and energy."""
    path.write_text(yaml.safe_dump({
        "name": "lenet5", "baseline": "dense",
        "workload": {"model": "lenet5", "num_classes": 10, "batch": batch,
                     "input_shape": [1, 28, 28], "data": data, "seed": 0},
        "runs": [{"name": "dense", "arch": DENSE},
                 {"name": "bare", "arch": DENSE, "arch_set": ["vector_unit=null"]}]}))
    return path


def as_older_desims(folder: Path) -> None:
    """`folder`'s summary.json as a desim before 2026-12-07 wrote it, without the hashes of
    config.json's resolved sections and of stats.json (`config_sha256`, `stats_sha256`): a
    test that edits config.json or stats.json to stand for an older desim's leaves
    summary.json as that desim's too."""
    summary = json.loads((folder / "summary.json").read_text())
    del summary["config_sha256"]
    del summary["stats_sha256"]
    (folder / "summary.json").write_text(json.dumps(summary))
