"""The mapper's time estimate of a tile pipeline, in closed form, and what it is for: a
larger buffer (fewer, larger tiles) must not make a design slower by the mapper's choice."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arch.accelerator import Accelerator
from desim.events import empty_table
from desim.experiment import load_arch
from mappings.counting import FF
from mappings.pipeline import (
    Overlap,
    buffered_cycles,
    equal_tiles_cycles,
    estimated_cycles,
    stage_totals,
)
from mappings.target import HardwareView
from tests.test_phase_overlap import _replay

ROOT = Path(__file__).resolve().parent.parent
DENSE = ROOT / "configs" / "arch" / "dense.yaml"


def test_one_tile_takes_the_sum_of_its_stages():
    assert buffered_cycles(np.array([[10.0, 30.0, 20.0, 5.0, 7.0]])) == 72.0
    assert equal_tiles_cycles([10.0, 30.0, 20.0, 5.0, 7.0], 1) == 72.0
    assert buffered_cycles(np.zeros((0, 5))) == 0.0


def test_equal_tiles_take_the_busiest_stage_plus_one_tiles_fill():
    """4 tiles of (1, 3, 2, 1, 1) cycles: the busiest stage's 12, plus the first tile's
    1 before it and the last tile's 2 + 1 + 1 after it."""
    times = np.tile([1.0, 3.0, 2.0, 1.0, 1.0], (4, 1))
    assert buffered_cycles(times) == 12 + 5 == equal_tiles_cycles([4.0, 12.0, 8.0, 4.0, 4.0], 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=5, max_size=5), st.integers(1, 40))
def test_the_search_closed_form_is_the_pipeline_for_equal_tiles(stage, tiles):
    """The tile search prices each candidate shape as equal tiles in closed form; the plan's
    estimate follows the tiles one by one. On equal tiles they agree, whatever the stages,
    where the fetches' reads do not share DRAM's channel with the write-backs (the closed
    form takes each direction as a stage of its own)."""
    times = np.tile(np.array(stage, dtype=np.float64), (tiles, 1))
    assert buffered_cycles(times, reads=np.zeros(tiles)) == pytest.approx(
        equal_tiles_cycles([c * tiles for c in stage], tiles), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=5, max_size=5), st.integers(1, 40),
       st.integers(0, 20000))
def test_the_closed_form_takes_a_first_fetch_longer_than_the_others(stage, tiles, extra):
    """A block held across the inner loop is fetched with the first tile of its sweep: that
    tile's fetch is longer than the others' and, where the phase waits for an earlier one's
    write-back, nothing overlaps it. The closed form, told the first fetch, is still the
    pipeline's (the tile search's `first_waits`); as an equal share of the fetches it was
    short by up to 46% of the pipeline's time on these random plans."""
    times = np.tile(np.array(stage, dtype=np.float64), (tiles, 1))
    times[0, 0] += extra
    totals = times.sum(axis=0).tolist()
    assert buffered_cycles(times, reads=np.zeros(tiles)) == pytest.approx(
        equal_tiles_cycles(totals, tiles, first_fetch=times[0, 0]), rel=1e-12)


def test_the_search_takes_the_first_fetch_of_the_phases_that_wait(monkeypatch):
    """FF and BP wait for the phase that wrote their input (`mapper.phase_waits`), so the
    tile search prices their first fetch as nothing overlaps it; a WG overlaps its BP and
    its search does not."""
    import torch
    from torch import nn

    import mappings.planner as planner
    from mappings.capture import capture
    from mappings.counting import BP, WG, SkipPolicy

    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs["first_waits"])
        return choose_tile(*args, **kwargs)

    choose_tile = planner.choose_tile
    monkeypatch.setattr(planner, "choose_tile", recording)
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = (torch.rand(2, 4, 6, 6) + 0.1).requires_grad_(True)
    (layer,) = capture(conv, x, torch.rand(2, 8, 6, 6), loss_fn=lambda o, t: (o * t).sum())
    hw = HardwareView(clusters=2, pes_per_cluster=2, buffer_bytes=4096, element_bytes=2)
    for phase in (FF, BP, WG):
        seen.clear()
        planner.tile_phase(layer, 0, phase, hw, SkipPolicy(), pruned_grads_unused=True)
        assert seen and set(seen) == {phase != WG}


def test_the_first_phase_of_the_iteration_fetches_its_weights_before_anything_runs():
    """A phase with none before it cannot read its first tile's weights ahead, so the tile
    search counts them in its first fetch (`hw.first_phase`, which the mapper sets on the
    iteration's first phase). LeNet-300-100's first layer (784 -> 300, batch 32, 10% of
    its weights kept) on trainer.yaml: taken as read ahead, the search held all the
    weights (their CSR fits a tile whole) in 8 tiles of 4 images, 6,960 cycles replayed,
    the first tile's whole weight fetch overlapping nothing; counted, it keeps blocks of 32
    channels over the whole batch: 10 tiles, 6,210."""
    from dataclasses import replace

    import torch

    from mappings.counting import SkipPolicy
    from mappings.planner import tile_phase
    from tests.test_designs_structured import linear_layer
    from tests.views import ARCH, arch_view

    torch.manual_seed(0)
    weight = torch.randn(300, 784)
    weight[torch.rand(300, 784) > 0.1] = 0
    layer = linear_layer(300, 784, n=32, weight=weight)
    hw = arch_view("trainer.yaml")

    plans = {first: tile_phase(layer, 0, FF, replace(hw, first_phase=first),
                               SkipPolicy(True, True, True, True), pruned_grads_unused=True)
             for first in (False, True)}
    ahead, first = plans[False], plans[True]
    assert ahead[1]["mapping"] == "300 ch x 4 images, weight stationary, whole reduction"
    assert first[1]["mapping"] == "32 ch x 32 images, weight stationary, whole reduction"
    assert (len(ahead[0]), len(first[0])) == (8, 10)
    assert _replayed(ahead[0], ARCH / "trainer.yaml") == pytest.approx(6_959.9, abs=0.1)
    assert _replayed(first[0], ARCH / "trainer.yaml") == pytest.approx(6_209.7, abs=0.1)


def test_the_mapper_marks_the_first_phase_of_the_iteration_only(monkeypatch):
    """`hw.first_phase` reaches the tile search of the iteration's first phase (LeNet-5's
    first conv's FF) and of no other."""
    import mappings.mapper as mapper
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload
    from tests.views import arch_view

    marked = []

    def recording(layer, layer_index, phase, hw, *args, **kwargs):
        marked.append(((layer_index, phase), hw.first_phase))
        return tile_phase(layer, layer_index, phase, hw, *args, **kwargs)

    tile_phase = mapper.tile_phase
    monkeypatch.setattr(mapper, "tile_phase", recording)
    workload = capture_workload(WorkloadSpec(model="lenet5", batch=2, data="random"),
                                PruningSpec(method="dense"))
    mapper.map_workload(workload, arch_view("dense.yaml"))
    assert {key for key, first in marked if first} == {(0, FF)}
    assert len(marked) > 10


def test_a_heavy_tile_behind_port_bound_ones_cannot_fetch_early():
    """Four tiles that take the NoC port 4 cycles each, then one that fetches for 6. It has
    a free half of the buffer (to fetch into) only once the third tile is distributed, at
    12: it fetches until 18 and is distributed by 19. With unbounded buffers it would have
    fetched under the first tiles and the plan ended at 17; taken as long as its busiest
    stage, each tile hiding the rest, at 4 * 4 + 6 = 22."""
    times = np.array([[0.0, 4.0, 0.0, 0.0, 0.0]] * 4 + [[6.0, 1.0, 0.0, 0.0, 0.0]])
    assert buffered_cycles(times) == 19.0


def test_a_gated_tile_reads_its_weights_ahead_of_its_gate():
    """Two phases of a tile each, the second waiting for the first's write-back: the first
    fetches in 10 cycles, computes in 100 and writes back in 10; the second reads 30, of
    which 20 are weights (no phase writes them), and computes in 5. As arch/accelerator.py
    fetches, the weights are read while the first tile computes, the rest after the
    write-back: 10 + 100 + 10 + 10 + 5 cycles; all of it after the write-back, 20 more."""
    times = np.array([[10, 0, 100, 0, 10], [30, 0, 5, 0, 0]], dtype=float)
    gates, reads = np.array([-1, 0]), np.array([10.0, 30.0])
    ahead = (np.array([0.0, 20.0]), np.array([10.0, 10.0]))
    assert buffered_cycles(times, gates=gates, reads=reads, ahead=ahead) == 135
    assert buffered_cycles(times, gates=gates, reads=reads) == 155


def test_only_tiles_with_results_wait_for_a_result_half():
    """A tile gathering for 5 cycles and writing back for 20, one computing for 10 with no
    results, then the first again. The third tile collects at 10, into the half nobody
    holds, and its write-back follows the first's: 45. Were the middle tile holding the
    other half, the third would wait for the first's write-back to end (25) to collect: 50."""
    results, none = [0.0, 0.0, 0.0, 5.0, 20.0], [0.0, 0.0, 10.0, 0.0, 0.0]
    times = np.array([results, none, results])
    assert buffered_cycles(times, np.array([True, False, True])) == 45.0
    assert buffered_cycles(times) == 50.0


def test_a_tile_is_sent_once_the_pes_are_done_with_the_tile_two_before_it():
    """The clusters' local buffers are double-buffered: a tile computing for 10 cycles, one
    for 1, then one the NoC port sends for 10. The third takes a local half when the
    first's compute ends, at 11: it is sent until 21 and computed by 22. Through the
    two-deep FIFOs alone it would have been sent from 2, under the first's compute, and the
    run would end at 13, as it does for tiles the clusters do not hold (a vector layer's)."""
    times = np.array([[0.0, 1.0, 10.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0],
                      [0.0, 10.0, 1.0, 0.0, 0.0]])
    assert buffered_cycles(times) == 22.0
    assert buffered_cycles(times, on_pes=np.zeros(3, bool)) == 13.0


def test_the_replay_sends_a_tile_once_the_pes_are_done_with_the_tile_two_before_it():
    """The same on dense.yaml, to the nearest cluster (2 links, a cycle each; 32 B a
    cycle; 4 MACs a PE a cycle and 4 cycles of fill): 32 B and 4,000 MACs (3 and 1,004
    cycles), 32 B and 4 MACs (3 and 5), 32,000 B and 4 MACs (1,002 and 5). The third is
    sent once the first is computed, at 1,007: the run ends at 1,007 + 1,002 + 5 = 2,014
    cycles. The clusters once took it as soon as the FIFO had room, under the first's
    compute: 1,017 cycles, though their 16 KiB could not have held it beside the first's
    operands."""
    table = empty_table(3)
    table["unicast_bytes"] = table["glb_read_bytes"] = [32, 32, 32_000]
    table["active_clusters"] = 1
    table["busiest_pe_macs"] = table["processed_macs"] = [4_000, 4, 4]
    assert _run_ps(table) == 2_014 * 2_000


def _run_ps(table: np.ndarray) -> int:
    """The run's time of one layer-phase's tiles on dense.yaml."""
    return int(_replay([table]).env.now)


def _replayed(table: np.ndarray, arch: Path = DENSE) -> float:
    """The run's time of one layer-phase's tiles, in the design's core cycles."""
    acc = _replay([table], arch=arch)
    return acc.env.now / acc.clock.period_ps


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
    assert alone - streamed == 144_286       # the write latency (and the wait for a DRAM clock
    #                                          edge), which the test's bounds span


def test_the_plan_estimate_follows_the_replay_of_a_heavy_tile_behind_light_ones():
    """DropBack's plans on LeNet-300-100 were like this: light tiles held up by the NoC port
    (2 KiB each, 72 cycles), then a tile that fetches a block of weights (8 KiB from DRAM,
    one row). It can fetch only once the third is distributed: the run takes three light
    tiles, the fetch and the heavy tile's distribution. The plan's estimate (the mapper's,
    from its stage times) is the replay's time but for the DRAM read's own timing, which
    the estimate takes at the streaming rate after tRCD + CL (0.6 cycles short here; 10.6
    at the peak rate), and the read's wait for the DRAM clock's next edge (under a tCK)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_cycles

    table = empty_table(5)
    table["multicast_bytes"][:4] = table["glb_read_bytes"][:4] = 2_048
    table["dram_read_bytes"][4] = table["glb_write_bytes"][4] = 8_192
    table["multicast_bytes"][4] = table["glb_read_bytes"][4] = 64
    table["active_clusters"] = 16
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    light = 2_048 / 32 + hw.noc_latency_cycles                    # the port, per tile
    fetch = _replayed(table[4:5]) - (64 / 32 + hw.noc_latency_cycles)  # the read alone
    assert light == 72.0 and fetch == pytest.approx(237.2155)
    edge_wait = _replayed(table) - (3 * light + fetch + 64 / 32 + 8)
    assert 0 < edge_wait * 2_000 < 833          # ps: asked for between two DRAM clock edges
    estimated_fetch = 8_192 / hw.dram_bytes_per_cycle + hw.dram_latency_cycles
    assert estimated_cycles(table, hw) == pytest.approx(
        _replayed(table) - (fetch - estimated_fetch) - edge_wait)
    assert fetch - estimated_fetch == pytest.approx(0.6256, abs=1e-3)


def test_the_plan_estimate_counts_the_buffers_reads_and_writes_of_a_vector_tile():
    """A vector layer's tile sends nothing over the NoC and gathers nothing: the buffer
    reads its operands out to the unit (51,200 bytes over 16 banks of 16: 200 cycles and
    2 of latency), the unit takes 6,400 operations over 64 lanes (100), and the buffer
    writes its 12,800 bytes of results (50 and 2), one after the other: 354 cycles, as the
    replay takes. The estimate had counted the unit's 100 alone (one LeNet-5 pooling's FF,
    1,503 cycles estimated and 1,952 replayed)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator

    table = empty_table(1)
    table["glb_read_bytes"] = 51_200
    table["vector_ops"] = 6_400
    table["glb_write_bytes"] = 12_800
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    assert estimated_cycles(table, hw) == 354.0
    acc = _replay([table])
    assert acc.env.now / acc.clock.period_ps == 354.0


def test_the_plan_estimate_follows_the_replay_of_a_fetch_behind_a_write_back():
    """On dense.yaml, three tiles that each fetch 3,200 B (101 cycles): the first sends
    160 B (13 cycles) and writes 36,000 B back (994), the second sends 3,200 B (108), the
    third 160 B and computes 8,000 MACs on a PE (2,004). The first's write-back is asked
    for while DRAM reads the second's operands, the third's fetch once the fetcher has
    passed the second on, after it: the run takes the three reads, the write-back, the
    third's send and compute, 3,313 cycles estimated, 3,324 replayed. The difference is
    each transaction's own timing (the DRAM model's against the estimate's rate and
    latency: each tile alone shows it), the pipeline is the same. The estimate once read
    the third tile under the write-back: 2,326 cycles, 30% short."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_cycles

    table = empty_table(3)
    table["dram_read_bytes"] = table["glb_write_bytes"] = 3_200
    table["multicast_bytes"] = table["glb_read_bytes"] = [160, 3_200, 160]
    table["dram_write_bytes"][0] = 36_000
    table["busiest_pe_macs"][2] = table["processed_macs"][2] = 8_000
    table["active_clusters"] = 16
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))

    def gap(rows: np.ndarray) -> float:   # the replay's time less the estimate's
        return _replayed(rows) - estimated_cycles(rows, hw)

    assert _replayed(table) == pytest.approx(3_324.2455)
    assert estimated_cycles(table, hw) == pytest.approx(3_313.078, abs=1e-3)
    # the first tile's read and write, then two reads, each as DRAM times it alone, and
    # the later transactions' waits for the DRAM clock's next edge (under a tCK each)
    edge_waits = gap(table) - (gap(table[:1]) + 2 * gap(table[1:2]))
    assert 0 < edge_waits * 2_000 < 3 * 833


def test_a_write_back_asked_for_with_a_fetch_goes_first_as_in_the_replay():
    """Three single-tile phases on dense.yaml, the third waiting for the first alone: each
    fetches 3,200 B and sends 160 B; the first writes 3,600 B back, the second 36,000 B
    (994 cycles), the third computes 8,000 MACs (2,004). The second's write-back is queued
    behind the first's, and the third's fetch waits for the first's to end: both are asked
    for at once. The accelerator's write-back stage asks DRAM before the fetcher, which
    resumes on the phase's end, does: the third reads after the long write and the run
    takes 3,430 cycles (3,425 estimated). Had the read gone first, it would have hidden
    the write under the compute: 2,430 cycles estimated (2,343 with reads apart from
    writes, the estimate before)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_cycles

    table = empty_table(3)
    table["layer"] = [0, 1, 2]
    table["dram_read_bytes"] = table["glb_write_bytes"] = 3_200
    table["multicast_bytes"] = table["glb_read_bytes"] = 160
    table["dram_write_bytes"][:2] = [3_600, 36_000]
    table["busiest_pe_macs"][2] = table["processed_macs"][2] = 8_000
    table["active_clusters"] = 16
    acc = _replay([table[:1], table[1:2], table[2:]], [-1, -1, 0])
    replayed = acc.env.now / acc.clock.period_ps
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    estimated = estimated_cycles(table, hw, np.array([-1, -1, 0]))
    assert replayed == pytest.approx(3_430.453)
    assert estimated == pytest.approx(replayed, rel=2e-3)


def test_the_plan_estimate_follows_dram_that_waits_for_the_port():
    """A plan like Trainer's WG phases with load balancing: the first tile sends 64 KiB
    over the NoC port (2,048 cycles) while DRAM has little to do, then 15 tiles that each
    read and write 3 KB, DRAM-bound, reads and writes alternating. The estimate once
    bounded the time by all of DRAM's work from cycle 0, as if the channel had worked while
    the port was busy: 4,022 cycles against the replay's 5,297; bounded from each start on,
    5,475. Its reads and writes served in the order they are asked for, 5,117: 3.4% under,
    the bus's turns between them left out (the replay pays one on each transaction here;
    in whole plans its latency mostly hides them, and counting them took the estimate
    further from the replay)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_cycles

    table = empty_table(16)
    for column in ("dram_read_bytes", "multicast_bytes", "gather_bytes", "dram_write_bytes"):
        table[column] = 3_000
    table["glb_read_bytes"] = table["glb_write_bytes"] = 6_000
    table["unicast_bytes"][0] = 65_536
    table["busiest_pe_macs"] = 200
    table["processed_macs"] = table["macs"] = 200 * 256
    table["active_clusters"] = 16
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    acc = _replay([table])
    replayed = acc.env.now / acc.clock.period_ps
    assert replayed == pytest.approx(5_296.8715)
    assert estimated_cycles(table, hw) == pytest.approx(5_117.490, abs=1e-3)


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
    against 149,930); every tiling of the smaller buffer fits the larger one. Now both take
    121,975. (With a vector pass's tile count the plan estimate's but the tile search's
    runner-up often the winner in its other loop order, 2 MiB had taken 13 cycles more:
    conv2's FF 16 tiles after a 1-tile pooling, 512 KiB's 3 chunks after a 2-tile one.)"""
    assert buffer_sweep[2048] <= buffer_sweep[512]


def test_the_plan_estimate_is_the_replay_on_a_dense_lenet(tmp_path):
    """LeNet-5 at batch 2 on dense.yaml, every conv and linear layer-phase's chosen plan
    replayed alone (benchmarks/plan_estimate.py): the estimate is within 3.5% of the replay
    in each of the 11 (0.968 to 1.014: what it leaves out, DRAM's own timing, goes either
    way; the worst are the last layer's FF, 529 cycles in 8 small tiles, and the first
    layer's FF, whose fetches, paced by its compute through the clusters' two local halves,
    meet its write-backs on DRAM: 1.017 before DRAM served them in the order asked for),
    and within 0.2% over them all (0.9997; 0.9998 before that, 0.9994 before the local
    halves, 1.0012 before DRAM's rate in the estimate left out refresh's share). Taking
    each tile as long as its busiest stage, the estimate was 70% short on one of the
    quickstart's phases."""
    from benchmarks.plan_estimate import estimate_vs_replay
    from desim.experiment import load_experiment

    (tmp_path / "e.yaml").write_text(f"""
name: e
workload: {{model: lenet5, batch: 2, data: digits, seed: 0}}
runs: [{{name: dense, arch: {DENSE}, pruning: {{method: dense}}}}]
baseline: dense
""")
    table = estimate_vs_replay(load_experiment(tmp_path / "e.yaml"))
    assert len(table) == 11                           # 4 layers x 3 phases, but the first BP
    assert table["ratio"].between(0.965, 1.02).all(), table
    assert table["replayed"].sum() / table["estimated"].sum() == pytest.approx(1.0, abs=2e-3)


def test_the_plan_estimate_benchmark_captures_as_desim_run_does(tmp_path, monkeypatch):
    """benchmarks/plan_estimate.py replays the plans `desim run` maps only if it captures
    the same workload: the model's float passes on one thread and what every design sharing
    the capture needs (trainer.yaml's speculator: the ReLU predictions). It had captured on
    torch's default threads without them (LeNet's exact_seed2 in
    trainer_speculation_accuracy: 13,173 cycles replayed phase by phase against the run's
    13,125)."""
    import torch

    import benchmarks.plan_estimate as plan_estimate
    from desim.experiment import load_experiment
    from desim.runner import capture_needs

    trainer = ROOT / "configs" / "arch" / "trainer.yaml"
    (tmp_path / "e.yaml").write_text(f"""
name: e
workload: {{model: lenet5, batch: 2, data: digits, seed: 0}}
runs:
  - {{name: dense, arch: {DENSE}, pruning: {{method: dynamic, sparsity: 0.5}}}}
  - {{name: trainer, arch: {trainer}, pruning: {{method: dynamic, sparsity: 0.5}}}}
baseline: dense
""")
    experiment = load_experiment(tmp_path / "e.yaml")
    seen = []
    real = plan_estimate.capture_workload

    def recorded(spec, pruning, needs):
        seen.append((needs, torch.get_num_threads()))
        return real(spec, pruning, needs)

    monkeypatch.setattr(plan_estimate, "capture_workload", recorded)
    threads = torch.get_num_threads()
    try:
        plan_estimate.estimate_vs_replay(experiment)
    finally:
        torch.set_num_threads(threads)
    both = capture_needs(experiment.archs["dense"]) | capture_needs(experiment.archs["trainer"])
    assert both != capture_needs(experiment.archs["dense"])  # the speculator's predictions
    assert seen == [(both, 1), (both, 1)]


def test_a_gated_tile_is_fetched_once_the_tile_it_waits_for_is_written_back():
    """Two tiles of (fetch 10, distribute 5, compute 20, collect 5, write 10): one after the
    other through the pipeline, the second fetched while the first computes (10 + 5 + 20 +
    20 + 5 + 10 = 70). A phase that needs the first's output waits for its write-back (at
    50) to fetch: 50 + 50 = 100, as the accelerator runs a phase behind the one it reads."""
    times = np.tile([10.0, 5.0, 20.0, 5.0, 10.0], (2, 1))
    assert buffered_cycles(times) == 70.0
    assert buffered_cycles(times, gates=np.array([-1, 0])) == 100.0


def test_a_fetch_asked_for_after_a_write_back_waits_for_it_on_dram():
    """DRAM's one channel serves reads and writes in the order they are asked for. Tile 0
    fetches for 10 cycles, is sent for 5 and asks to write back for 100 at 15, while DRAM
    reads tile 1 (10 to 20): it writes from 20 to 120. Tile 2 (sent for 5, computed for
    50) asks to fetch once the fetcher has passed tile 1 on, at 20, after the write-back:
    it reads from 120 to 130, is sent by 135 and computed by 185. With DRAM's reads apart
    from its writes it read from 20 to 30 under the write-back and the run ended with it,
    at 115 (130 with the estimate's bound before, of one channel doing from each
    transaction's start on all that starts later)."""
    times = np.array([[10.0, 5.0, 0.0, 0.0, 100.0], [10.0, 10.0, 0.0, 0.0, 0.0],
                      [10.0, 5.0, 50.0, 0.0, 0.0]])
    assert buffered_cycles(times) == 185.0
    # a fetch the weight generator makes, with nothing to read, does not wait for DRAM
    assert buffered_cycles(times, reads=np.array([10.0, 10.0, 0.0])) == 120.0


# A view with unit rates and no latencies: a tile's stages are its bytes and MACs.
UNIT = HardwareView(clusters=1, pes_per_cluster=1, buffer_bytes=1 << 20, element_bytes=2)


def _tiles(n: int, read: int = 0, macs: int = 0, gather: int = 0, write: int = 0
           ) -> np.ndarray:
    table = empty_table(n)
    table["dram_read_bytes"], table["busiest_pe_macs"] = read, macs
    table["gather_bytes"], table["dram_write_bytes"] = gather, write
    return table


def test_a_wg_adds_what_its_bp_does_not_hide():
    """A WG does not wait for its BP: its one tile (fetch 50, compute 10) is fetched while
    the BP's eight tiles (compute 100 each: 800 cycles) still compute, once a local half
    frees (at 500), and computes after them. It adds 10 cycles, where alone it takes 60
    (`Overlap.cycles`: the neighbours' with the plan's tiles between them)."""
    bp, wg = _tiles(8, macs=100), _tiles(1, read=50, macs=10)
    between = Overlap.around(bp, _tiles(0), UNIT)   # nothing after it
    assert estimated_cycles(bp, UNIT) == 800.0
    assert between.cycles(wg, UNIT) == 810.0
    assert estimated_cycles(wg, UNIT) == 60.0


def test_the_next_bp_hides_a_wg_unless_an_update_waits_for_it():
    """BP tiles fetch 100 and compute 100: eight take 900 cycles. The next phase, a BP
    too, waits for them to be written back (at 900), not for the WG: it fetches from 900 to
    1,800 while the WG's one tile (compute 60) computes after the BP, and its first
    compute is at 1,000. The WG adds nothing. An update after the WG waits for its dW:
    then the WG adds its 60 cycles."""
    bp, wg = _tiles(8, read=100, macs=100), _tiles(1, macs=60)
    between = Overlap.around(bp, bp, UNIT)
    assert between.cycles(_tiles(0), UNIT) == between.cycles(wg, UNIT) == 1_800.0
    before_update = Overlap.around(bp, _tiles(0), UNIT)   # the update waits: no next tiles
    assert (before_update.cycles(_tiles(0), UNIT), before_update.cycles(wg, UNIT)) == (
        900.0, 960.0)


TILE = st.tuples(*[st.integers(0, 300)] * 4)  # a tile's read, MACs, gather, write


@settings(max_examples=400, deadline=None)
@given(st.lists(TILE, min_size=1, max_size=10), st.lists(TILE, min_size=1, max_size=6),
       st.lists(TILE, max_size=10))
def test_no_plan_between_its_neighbours_takes_less_than_the_floor(bp, wg, after):
    """`Overlap.floor_cycles` is what keeps the plan floors (`planner._ChunkFloor`) valid
    for a WG ranked with its neighbours' tiles: no plan whose stage totals are at least
    those it is given runs, between any neighbours (`after` empty: an update waits),
    in fewer cycles."""
    def table(tiles: list[tuple[int, ...]]) -> np.ndarray:
        rows = _tiles(len(tiles))
        for i, tile in enumerate(tiles):
            for column, value in zip(("dram_read_bytes", "busiest_pe_macs", "gather_bytes",
                                      "dram_write_bytes"), tile, strict=True):
                rows[i][column] = value
        return rows

    plan = table(wg)
    between = Overlap.around(table(bp), table(after), UNIT)
    assert between.cycles(plan, UNIT) >= between.floor_cycles(stage_totals(plan, UNIT)) - 1e-9


def test_a_tile_put_between_two_phases_can_shorten_them():
    """Why `Overlap.floor_cycles` is not the neighbours' own cycles plus something: with
    nothing between them, the next phase's two tiles (a write-back of 1 cycle; a read of
    1 and a collection of 1) take 3 cycles, DRAM asked for the write first; a WG tile
    between them (a collection of 1) changes the order DRAM is asked in, and the three
    take 2. The floor the plan gets is 2."""
    empty, wg = _tiles(1), _tiles(1, gather=1)
    after = np.concatenate([_tiles(1, write=1), _tiles(1, read=1, gather=1)])
    between = Overlap.around(empty, after, UNIT)
    assert between.cycles(_tiles(0), UNIT) == 3.0
    assert between.cycles(wg, UNIT) == 2.0
    assert between.floor_cycles(stage_totals(wg, UNIT)) == 2.0


def _pruned_to_90(tmp_path: Path, model: str, design: str) -> Path:
    """An experiment of one run, `model` at batch 32 on digits (seed 2) on
    configs/arch/<design>.yaml, pruned dynamically to 90%; the run is named `design`."""
    path = tmp_path / "e.yaml"
    path.write_text(f"""
name: e
workload: {{model: {model}, batch: 32, data: digits, seed: 2}}
runs: [{{name: {design}, arch: {ROOT / "configs" / "arch" / f"{design}.yaml"},
        pruning: {{method: dynamic, sparsity: 0.9, skip_last_linear: false}}}}]
baseline: {design}
""")
    return path


def test_wg_plans_ranked_between_their_neighbours_make_the_run_faster(tmp_path,
                                                                    monkeypatch):
    """LeNet-300-100 on trainer.yaml (dynamic pruning to 90%, batch 32, seed 2). Ranked
    alone, each WG's plan paid a fill and a drain that its BP before and the next BP hide,
    and the mapper cut the last layer's reduction into 4 chunks, the middle layer's into
    tiles of 75 input channels. Ranked between them (`pipeline.Overlap`): the whole
    reduction and tiles of all 300 input channels, and the run takes 12,474 cycles against
    12,601. (When each vector pass was the fewest tiles that fit: 13,024 against 13,122,
    between them 2 chunks, alone 150 input channels.)"""
    import mappings.mapper as mapper
    from desim.experiment import load_experiment
    from desim.runner import run

    experiment = _pruned_to_90(tmp_path, "lenet300", "trainer")

    def ran() -> tuple[int, dict[str, str]]:
        result = run(load_experiment(experiment))["trainer"]
        wg = result.layers[result.layers["phase"] == "WG"]
        return result.cycles, dict(zip(wg["layer"], wg["mapping"], strict=True))

    between, plans = ran()
    monkeypatch.setattr(mapper, "bp_before", lambda *args: None)
    alone, alone_plans = ran()
    assert (between, alone) == (12_474, 12_601)
    assert "whole reduction" in plans["4"] and "4 reduction chunks" in alone_plans["4"]
    assert "300 input channels" in plans["2"] and "75 input channels" in alone_plans["2"]


def test_a_wg_is_ranked_again_when_reuse_maps_the_phase_after_it_again(tmp_path,
                                                                       monkeypatch):
    """LeNet-5 on hppu.yaml (dynamic pruning to 90%, batch 32, digits, seed 2). conv2's WG
    (layer "2") is first ranked against the first mapping of the phase after it, a pooling
    BP; inter-layer reuse then maps that phase again with its input kept on chip
    (`keep_output_on_chip`). Ranked again against those tiles (`follows`), the WG takes the
    whole reduction, and the run 125,346 cycles; kept as first ranked, 8 chunks innermost
    and 125,402 (126,917 and 127,007 before tiles were sized as their operands are stored,
    session 51). (They had been 8 chunks, 128,645, and 4 chunks,
    129,588, when the pooling's passes were each one tile, the fewest that fit: now their
    count is the estimate's, `vector.pass_tiles`, and the phase after the WG changed.)"""
    import mappings.mapper as mapper
    from desim.experiment import load_experiment
    from desim.runner import run

    experiment = _pruned_to_90(tmp_path, "lenet5", "hppu")

    def ran() -> tuple[int, str]:
        result = run(load_experiment(experiment))["hppu"]
        layers = result.layers
        wg = layers[(layers["phase"] == "WG") & (layers["layer"] == "2")]
        return result.cycles, wg["mapping"].iloc[0]

    again, plan = ran()
    first_ranked = mapper.PhaseMapper.__call__

    def ranked_once(self, layer_id, phase, hw, input_resident=False, overlaps=None,
                    follows=None):
        return first_ranked(self, layer_id, phase, hw, input_resident, overlaps)

    monkeypatch.setattr(mapper.PhaseMapper, "__call__", ranked_once)
    once, once_plan = ran()
    assert (again, once) == (125_346, 125_402)
    assert "whole reduction" in plan and "8 reduction chunks" in once_plan


def test_the_mapper_weighs_a_run_of_phases_as_the_accelerator_runs_it():
    """Reuse decisions compare runs of layer-phases (`mapper._span_key`). A phase waits for
    the one before it to be written back, so two phases that each read then write take
    their two times one after the other: 4,068 cycles estimated, 4,224 replayed (the
    vector phase's buffer accesses, which its estimate leaves out, are most of the rest).
    Their tiles taken as one pipeline, the second's read overlapped the first's compute,
    and a vector phase's operations took no time at all: 2,661 cycles."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.mapper import PhaseWork, _span_key, phase_waits
    from mappings.pipeline import plan_key

    def phase(layer: int, p: int, vector: bool) -> PhaseWork:
        table = empty_table(1)
        table["layer"], table["phase"] = layer, p   # vector layers' ids are negative
        table["dram_read_bytes"] = table["dram_write_bytes"] = 16_000
        table["glb_read_bytes"], table["glb_write_bytes"] = 16_000, 32_000
        if vector:
            table["vector_ops"] = 64_000       # 1,000 cycles on 64 lanes
        else:
            table["multicast_bytes"] = table["gather_bytes"] = 16_000
            table["busiest_pe_macs"] = table["processed_macs"] = 1_000
            table["active_clusters"] = 16
        return PhaseWork(layer=layer, phase=p, name=f"l{layer}", table=table)

    span = [phase(0, FF, False), phase(-1, FF, True)]
    assert phase_waits(span) == [-1, 0]
    acc = _replay([w.table for w in span], phase_waits(span))
    replayed = acc.env.now / acc.clock.period_ps
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    alone = [plan_key(w.table, hw, 0)[1] for w in span]
    assert _span_key(span, hw)[1] == pytest.approx(sum(alone), rel=1e-9)
    assert replayed == pytest.approx(4_224.2315)
    assert 0.96 < _span_key(span, hw)[1] / replayed < 1.0
    assert alone[1] > 1_000                      # the vector unit's time, and DRAM's


def test_the_plan_energy_prices_the_write_backs_buffer_reads_and_vector_operations():
    """A vector tile reading 1,000 B from DRAM into the buffer, 640 operations, 500 B of
    result written into the buffer and read out again to DRAM: the buffer moves 1,000 +
    1,000 + 500 + 500 B, the operations are priced as MACs (as arch/vector.py prices
    them), DRAM reads 1,000 B and writes 500 B, each at its own price (DDR4's write 13%
    below its read, as arch/dram.py prices the bursts)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_pj

    table = empty_table(1)
    table["dram_read_bytes"], table["dram_write_bytes"] = 1_000, 500
    table["glb_read_bytes"], table["glb_write_bytes"] = 1_000, 1_500
    table["vector_ops"] = 640
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    assert estimated_pj(table, hw, 100.0) == pytest.approx(
        640 * hw.mac_pj + 1_000 * hw.dram_pj_per_byte + 500 * hw.dram_write_pj_per_byte
        + 3_000 * hw.glb_pj_per_byte + 100 * hw.static_pj_per_cycle, rel=1e-12)
    assert hw.dram_write_pj_per_byte / hw.dram_pj_per_byte == pytest.approx(0.871, abs=1e-3)
    # a design that prices its vector unit's operations apart: at that price, as the replay
    arch = load_arch(DENSE, ["energy.vector_op_pj=0.05"])
    priced = hardware_view(Accelerator(Simulator(), arch))
    assert priced.vector_op_pj == 0.05 != priced.mac_pj
    assert estimated_pj(table, priced, 100.0) - estimated_pj(table, hw, 100.0) == (
        pytest.approx(640 * (0.05 - hw.mac_pj), rel=1e-9))


def test_the_plan_energy_prices_the_local_buffers_as_the_replay_does():
    """A tile multicasting 2,000 B to 16 clusters and unicasting 1,600 B among them: the
    clusters' local buffers take 16 x 2,000 + 1,600 B, each byte written there and read
    once by the PEs. The estimate prices both, as the replay does (it had priced the writes
    alone, multicast at some 20% under its cost)."""
    from desim.hardware_view import hardware_view
    from desim.module import Simulator
    from mappings.pipeline import estimated_pj

    table = empty_table(1)
    table["multicast_bytes"], table["unicast_bytes"] = 2_000, 1_600
    table["active_clusters"] = 16
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    acc = _replay([table])
    (record,) = acc.records
    energy = acc.energy_pj(record.actions, record.since_ps, record.end_ps)
    local = energy["local_buffers.write_bytes"] + energy["local_buffers.read_bytes"]
    assert local == pytest.approx(2 * (16 * 2_000 + 1_600) * hw.local_pj_per_byte, rel=1e-12)
    noc = 2_000 * hw.noc_multicast_pj_per_byte + 1_600 * hw.noc_pj_per_byte
    assert estimated_pj(table, hw, 0.0) == pytest.approx(local + noc, rel=1e-12)


def test_the_bound_windows_check_splits_the_run_as_desim_does(tmp_path):
    """benchmarks/bound_windows.py: its "own" split is summary.json's time_by_busiest_part
    (the same labels, the same shares of the run), and both splits share out the whole run."""
    from small_experiments import lenet300_experiment

    import desim
    from benchmarks.bound_windows import bound_splits

    experiment = lenet300_experiment(tmp_path / "lenet300.yaml", {
        "dense": {"method": "dense"}, "sparse": {"method": "magnitude", "sparsity": 0.5}})
    result = desim.run(experiment)
    for run, split in bound_splits(str(experiment), []).items():
        seconds = result.summary["runs"][run]["seconds"]
        total = sum(split["own"].values())
        assert total == sum(split["window"].values())
        assert total == pytest.approx(seconds * 1e12)
        shares = {part: ps / total for part, ps in split["own"].items() if part}
        expected = {p: s for p, s in result.summary["runs"][run]["time_by_busiest_part"].items()
                    if s}
        assert shares == pytest.approx(expected, rel=1e-3)  # summary.json: whole cycles


def test_the_phase_after_a_vector_pass_waits_for_it():
    """A WG's neighbours: the phase after it does not wait for it, only for the BP before
    it (its first tile gated on the BP's last). A vector pass's: the phase after it waits
    for the pass (gated on the pass's last tile), not for a WG before it."""
    from mappings.pipeline import _after_gated
    assert _after_gated(2, 3, 2).tolist() == [-1, -1, -1, -1, -1, 1, -1]
    assert _after_gated(2, 3, 2, after_waits=True).tolist() == [-1, -1, -1, -1, -1, 4, -1]
    assert _after_gated(0, 3, 2, after_waits=True).tolist() == [-1, -1, -1, 2, -1]
