"""Counting is exact, so the event tables do not depend on how many threads count them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from views import arch_view

from mappings.mapper import map_workload
from mappings.pruning import PruningSpec
from mappings.threads import counting_threads, set_counting_threads
from mappings.workload import WorkloadSpec, capture_workload


@pytest.fixture(scope="module")
def workload():
    """ResNet-18 at 64 x 64, batch 2: maps large enough for torch to split over threads."""
    spec = WorkloadSpec(model="resnet18", batch=2, input_shape=[3, 64, 64], data="random")
    return capture_workload(spec, PruningSpec(method="hybrid", sparsity=0.7))


@pytest.mark.parametrize("arch", ["dense.yaml", "hppu_like.yaml"])
def test_event_tables_are_the_same_on_one_and_two_threads(workload, arch):
    hw = arch_view(arch)
    tables = {}
    caller = torch.get_num_threads()
    configured = set_counting_threads(1)
    try:
        for threads in (1, 2):
            set_counting_threads(threads)
            with counting_threads():
                assert torch.get_num_threads() == threads
            tables[threads] = [w.table.tobytes() for w in map_workload(workload, hw)]
    finally:
        set_counting_threads(configured)
    assert torch.get_num_threads() == caller  # the caller's own setting, restored
    assert tables[1] == tables[2]


@pytest.mark.parametrize("package, preset, seen", [
    ("desim", None, "PASSIVE"), ("mappings", None, "PASSIVE"), ("desim", "ACTIVE", "ACTIVE")])
def test_waiting_threads_sleep_unless_the_user_says_otherwise(package, preset, seen):
    """Importing desim or mappings before torch makes OpenMP's waiting threads sleep (a
    spinning one took 15 s of counting instead of 1.5 on a busy machine); a user's own
    OMP_WAIT_POLICY stays."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", f"import {package}, os; "
                          "print(os.environ['OMP_WAIT_POLICY'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == seen
