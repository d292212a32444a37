"""Layer-phases overlap where the data lets them: a layer's WG needs X and dY, not its BP's
dX, so it starts while that BP drains; every other phase waits for the ones before it."""

from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest

from arch.accelerator import Accelerator
from arch.dram import PRESETS, DramChannelModel
from desim.events import empty_table
from desim.experiment import load_arch
from desim.module import Simulator
from mappings.counting import BP, FF, WG
from mappings.mapper import PhaseWork, phase_waits

DENSE = Path(__file__).resolve().parent.parent / "configs" / "arch" / "dense.yaml"
MACS = 64_000 * 4  # the busiest PE's MACs: 64,000 cycles at 4 MACs a PE a cycle
READ = 19_200      # bytes: 1 us of one DDR4-2400 channel (19.2 GB/s), before its latency
DDR4 = PRESETS["DDR4-2400"]


def _work(layer: int, phase: int) -> PhaseWork:
    return PhaseWork(f"l{layer}", layer, phase, empty_table(0))


def test_only_a_layers_wg_skips_its_bp_and_nothing_waits_for_a_wg():
    order = [(0, FF), (1, FF), (-1, BP), (1, BP), (1, WG), (-2, BP), (0, WG)]
    assert phase_waits([_work(*p) for p in order]) == [-1, 0, 1, 2, 2, 3, 5]


def test_the_bp_of_a_matmuls_second_operand_waits_for_the_matmuls_wg():
    """a = A(x), b = B(x), s = a b^T: the MatMul's WG makes db, which B's BP and WG read as
    their dY; so they wait for it (and all before it), not only for the MatMul's BP. B's BP
    had run before db was written. A weight layer's WG is still waited for by nothing."""
    from mappings.counting import WG as W

    order = [(0, FF), (1, FF), (2, FF), (2, BP), (2, W), (1, BP), (1, W), (0, BP), (0, W)]
    work = [_work(*p) for p in order]
    work[4].activation_gradient = True   # the MatMul's (layer 2's) WG
    assert phase_waits(work) == [-1, 0, 1, 2, 2, 4, 4, 5, 5]


def test_the_mapper_marks_a_matmuls_wg_as_an_activations_gradient():
    """The transformer block's two MatMuls (Q K^T, attention V): their WGs make K's and V's
    gradients; the linear layers' WGs make weight gradients."""
    from desim.experiment import load_arch
    from desim.hardware_view import hardware_view
    from mappings.mapper import map_workload
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    workload = capture_workload(WorkloadSpec(model="transformer_block", batch=1,
                                             input_shape=[8, 32], data="random",
                                             model_args={"dim": 32, "seq_len": 8}),
                                PruningSpec(method="dense"))
    hw = hardware_view(Accelerator(Simulator(), load_arch(DENSE)))
    marked = {w.name for w in map_workload(workload, hw) if w.activation_gradient}
    assert marked == {"scores", "mix"}


def _tile(layer: int, phase: int, *, macs: int = 0, read: int = 0) -> np.ndarray:
    table = empty_table(1)
    table["layer"], table["phase"] = layer, phase
    table["busiest_pe_macs"] = table["processed_macs"] = macs
    table["dram_read_bytes"] = table["glb_write_bytes"] = read
    return table


def _replay(tables: list[np.ndarray], waits: list[int] | None = None,
            arch: Path = DENSE) -> Accelerator:
    sim = Simulator()
    acc = Accelerator(sim, load_arch(arch))
    acc.replay(tables, waits)
    sim.run()
    return acc


def _dram_edge(ps: int) -> int:
    """The DRAM clock's first edge at or after `ps` (DDR4-2400's 833 ps tCK), where a
    transaction asked for at `ps` starts."""
    return -(-ps // DDR4.tck_ps) * DDR4.tck_ps


def test_wg_fetches_while_its_bp_computes_and_the_run_is_shared_out_exactly():
    """BP computes for 64,000 cycles (and the MAC pipeline's fill); WG only reads 1 us from
    DRAM. With a
    barrier the run takes the sum of the two alone; overlapped, WG's read hides under BP's
    compute and the run takes BP's time alone (after the barrier, the read starts on the
    DRAM clock's next edge). Either way the phases' shares (previous end
    to own end) add up to the run, and each span runs from its first fetch to its last
    write-back; the read is WG's action, though it happens in BP's share of the time."""
    bp, wg = _tile(0, BP, macs=MACS), _tile(0, WG, read=READ)
    alone = _replay([bp])
    alone_bp, alone_wg = alone.env.now, _replay([wg]).env.now
    fill = alone.cfg.pe_cluster.pipeline_cycles
    assert alone_bp == (64_000 + fill) * 2_000         # ps: 2 ns cycles, nothing else to do
    assert alone_wg == DramChannelModel(DDR4).access(0, 0, READ, False).end_ps  # the read

    barrier = _replay([bp, wg])                        # default: each waits for the last
    assert barrier.env.now == _dram_edge(alone_bp) + alone_wg
    overlapped = _replay([bp, wg], phase_waits([_work(0, BP), _work(0, WG)]))
    assert overlapped.env.now == alone_bp
    first, second = overlapped.records
    assert (first.start_ps, first.since_ps, first.end_ps) == (0, 0, alone_bp)
    assert (second.start_ps, second.since_ps, second.end_ps) == (0, alone_bp, alone_bp)
    assert sum(r.end_ps - r.since_ps for r in overlapped.records) == overlapped.env.now
    dram = f"{overlapped.path}.dram"
    assert dram not in overlapped.records[0].actions
    assert overlapped.records[1].actions[dram]["read_bytes"] == READ


def test_a_phase_reads_its_first_tiles_weights_before_the_phase_it_waits_for_ends():
    """FF of layer 1 waits for FF of layer 0 (its input), but not to read its weights: a
    first tile that reads only weights is fetched under layer 0's compute, and the run
    takes layer 0's time; the same bytes as activations wait, and the times add up."""
    ff0 = _tile(0, FF, macs=MACS)
    activations = _tile(1, FF, read=READ)
    weights = activations.copy()
    weights["weight_read_bytes"] = READ
    waits = phase_waits([_work(0, FF), _work(1, FF)])
    assert waits == [-1, 0]
    alone_ff0, alone_ff1 = _replay([ff0]).env.now, _replay([activations]).env.now
    assert _replay([weights]).env.now == alone_ff1      # nothing to wait for: one read
    assert _replay([ff0, activations], waits).env.now == _dram_edge(alone_ff0) + alone_ff1
    prefetched = _replay([ff0, weights], waits)
    assert prefetched.env.now == alone_ff0
    assert prefetched.records[1].start_ps == 0           # its span starts with the prefetch


def test_fetch_runs_at_most_two_tiles_ahead_of_distribution():
    """The global buffer is double-buffered: a third tile's operands may not be fetched
    before the first tile's operands have left for the clusters. Tiles that read 1 us
    from DRAM and then take ~16x longer on the NoC (256 KiB through the port's 32 B/cycle
    link, then 8 hops): the second read follows the first at once, the third waits for the
    first tile's whole read-and-send, and the four sends run back to back."""
    tile = _tile(0, FF, read=READ)
    tile["unicast_bytes"] = tile["glb_read_bytes"] = 256 * 1024
    tile["active_clusters"] = 16
    one = _replay([tile]).env.now                      # read, then send to the clusters
    sim = Simulator()
    acc = Accelerator(sim, load_arch(DENSE))
    starts, transfer = [], acc.dram.transfer

    def logged(nbytes: int, is_write: bool) -> Generator:
        starts.append(acc.env.now)
        yield from transfer(nbytes, is_write=is_write)

    acc.dram.transfer = logged
    acc.replay([np.concatenate([tile] * 4)])
    sim.run()
    read = _replay([_tile(0, FF, read=READ)]).env.now
    send = (256 * 1024 // 32 + 8) * 2_000              # ps: the NoC, the slow stage
    assert one == read + send
    assert starts[1] == read                           # the second half was free
    assert starts[2] == one                            # the third waited for the first send
    assert sim.env.now == read + 4 * send              # four sends, one after another


def test_a_training_runs_phases_share_its_time_though_their_spans_overlap():
    """LeNet-5 training on dense.yaml: each phase's cycles are its share of the run, so they
    add up to it exactly though the spans overlap: a layer's WG starts
    before the BP just before it has ended (with a barrier each, none would). A phase that
    ends when the one before it does adds no time but keeps its own energy and DRAM bytes
    (what its tiles counted): here the second pooling's BP, whose input fc 5's BP left on
    chip, is done before fc 5's WG has written its gradient; its tiles move 800 B of DRAM."""
    from desim.runner import simulate
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    workload = capture_workload(WorkloadSpec(model="lenet5", batch=2, data="random"),
                                PruningSpec(method="dense"))
    result = simulate("dense", load_arch(DENSE), workload)
    rows = result.layers
    total = result.cycles
    assert rows["cycles"].sum() == total
    hidden = rows["cycles"] == 0
    assert list(zip(rows["layer"][hidden], rows["phase"][hidden], strict=True)) == [("3", "BP")]
    assert (rows["energy_j"] > 0).all() and list(rows["dram_bytes"][hidden]) == [800]
    assert rows["energy_j"].sum() == pytest.approx(sum(result.energy_by_action_j.values()))
    overlapped = 0
    for i in range(1, len(rows)):
        bp, wg = rows.iloc[i - 1], rows.iloc[i]
        if wg["phase"] == "WG" and bp["phase"] == "BP" and wg["layer"] == bp["layer"]:
            overlapped += wg["start_cycle"] < bp["end_cycle"]
    assert overlapped == 3                      # the weight layers with a BP and a WG
    # The PE array runs the convs and linears, the vector unit the poolings; each unit's
    # share in the summary is its rows' (the ReLUs ride on their convs' output streams).
    units = result.summary()["units"]
    assert set(rows["unit"]) == set(units) == {"pe_array", "vector_unit"}
    assert ((rows["unit"] == "vector_unit") == (rows["macs"] == 0)).all()
    assert {u: units[u]["cycles"] for u in units} == rows.groupby("unit")["cycles"].sum().to_dict()
    assert sum(u["cycles"] for u in units.values()) == rows["cycles"].sum()


def test_each_phase_is_given_its_own_tiles_dram_bytes():
    """LeNet-5 training on dense.yaml, phases overlapping: each layer-phase's DRAM bytes in
    the run's table are exactly what its own tiles read and write (event table), not what
    DRAM moved during its share of the time; and they add up to the run's."""
    from desim.hardware_view import hardware_view
    from desim.runner import simulate
    from mappings.mapper import map_workload
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    workload = capture_workload(WorkloadSpec(model="lenet5", batch=2, data="random"),
                                PruningSpec(method="dense"))
    arch = load_arch(DENSE)
    result = simulate("dense", arch, workload)
    work = map_workload(workload, hardware_view(Accelerator(Simulator(), arch)))
    own = [int(w.table["dram_read_bytes"].sum() + w.table["dram_write_bytes"].sum())
           for w in work]
    assert list(result.layers["dram_bytes"]) == own
    dram = result.stats["modules"]["dense.dram"]["actions"]
    assert sum(own) == dram["read_bytes"] + dram["write_bytes"] == 1_798_312 + 997_440
