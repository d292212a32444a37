"""The mapper's time estimate of a tile pipeline, in closed form, and what it is for: a
larger buffer (fewer, larger tiles) must not make a design slower by the mapper's choice."""

from pathlib import Path

import numpy as np
import pytest

from desim.events import empty_table
from desim.experiment import load_arch
from mappings.pipeline import equal_tiles_cycles, pipelined_cycles
from tests.test_phase_overlap import _replay

ROOT = Path(__file__).resolve().parent.parent
DENSE = ROOT / "configs" / "arch" / "dense.yaml"


def test_one_tile_takes_the_sum_of_its_stages():
    assert pipelined_cycles(np.array([[10.0, 30.0, 20.0]])) == 60.0
    assert equal_tiles_cycles([10.0, 30.0, 20.0], 1) == 60.0
    assert pipelined_cycles(np.zeros((0, 3))) == 0.0


def test_equal_tiles_take_the_busiest_stage_plus_one_tiles_fill():
    """4 tiles of (1, 3, 2) cycles: the busiest stage's 12, plus the first tile's 1 + 2."""
    times = np.tile([1.0, 3.0, 2.0], (4, 1))
    assert pipelined_cycles(times) == 12 + 3 == equal_tiles_cycles([4.0, 12.0, 8.0], 4)


def test_unequal_tiles_each_take_their_busiest_stage():
    times = np.array([[5.0, 1.0], [1.0, 7.0], [2.0, 2.0]])
    assert pipelined_cycles(times) == (5 + 7 + 2) + 1


def _run_ps(table: np.ndarray) -> int:
    """The run's time of one layer-phase's tiles on dense.yaml."""
    return int(_replay([table]).env.now)


def test_a_tile_without_results_holds_no_result_half():
    """A reduction in chunks innermost: a tile's sums stay in the PEs until its last chunk.
    Four such pairs (no results; then 64,000 B gathered over the port's 32 B/cycle link,
    2,008 cycles with the 8 hops, and 16,000 B written to DRAM): with the buffer's two
    result halves held only by tiles that have results, each write-back hides under the
    next gather, and the run takes the four gathers and the last write-back. (When every
    tile held a half, a gather waited for the write-back two tiles before it.)"""
    def results(table: np.ndarray, rows: slice, gather: int, write: int) -> None:
        table["gather_bytes"][rows] = table["glb_write_bytes"][rows] = gather
        table["dram_write_bytes"][rows] = table["glb_read_bytes"][rows] = write
        table["active_clusters"] = 16

    pairs = empty_table(8)
    results(pairs, slice(1, None, 2), 64_000, 16_000)
    writes = empty_table(2)
    results(writes, slice(None), 0, 16_000)
    alone = _run_ps(writes[:1])
    streamed = _run_ps(writes) - alone       # a write right behind another: no latency
    gather = (64_000 // 32 + 8) * 2_000      # ps
    total = _run_ps(pairs)
    # the last write-back lasts between a streamed write and one alone (its row is open,
    # its latency not hidden); every other one is hidden
    assert 4 * gather + streamed < total < 4 * gather + alone
    assert alone - streamed == 143_954       # the write latency, which the test's bounds span


@pytest.fixture(scope="module")
def buffer_sweep():
    from desim.runner import simulate
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    workload = capture_workload(WorkloadSpec(model="lenet5", batch=4, data="digits"),
                                PruningSpec(method="dense"))
    return {kib: simulate(f"gb{kib}", load_arch(DENSE, [f"global_buffer.capacity_kib={kib}"]),
                          workload).cycles for kib in (512, 2048)}


def test_a_larger_buffer_does_not_make_the_run_slower(buffer_sweep):
    """LeNet-5 at batch 4 on dense.yaml: with 2 MiB every layer fits in a tile or two, with
    512 KiB nearly so. When the estimate took each tile's busiest stage alone, the 2 MiB
    design took one tile where it could take several and ran 41% slower (212,150 cycles
    against 149,930); every tiling of the smaller buffer fits the larger one."""
    assert buffer_sweep[2048] <= buffer_sweep[512]
