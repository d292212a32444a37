"""The optimizer's weight update (`workload.weight_update`, phase WU, `mappings.update`): a
pass over each weighted layer's weights on the vector unit after its WG, reading W, dW and
the optimizer's state and writing W and the state. Closed forms on LeNet-300 (784-300-100-10,
fp16: 2 bytes a value)."""

from dataclasses import replace

import pytest

from mappings.counting import WG, WU
from mappings.mapper import map_workload, phase_waits
from mappings.specs import PruningSpec, WorkloadSpec
from mappings.update import OPTIMIZERS, update_traffic
from mappings.workload import capture_workload
from tests.views import arch_view

WEIGHTS = {"0": 784 * 300, "2": 300 * 100, "4": 100 * 10}   # LeNet-300's linear layers


def lenet300(update: str, pruning: PruningSpec | None = None):
    return capture_workload(WorkloadSpec(model="lenet300", batch=2, input_shape=[784],
                                         seed=0, weight_update=update),
                            pruning or PruningSpec(method="dense"))


@pytest.mark.parametrize("optimizer, ops, states", [("sgd", 1, 0), ("momentum", 2, 1),
                                                    ("adam", 9, 2)])
def test_a_dense_update_reads_w_dw_and_the_state_and_writes_w_and_the_state(optimizer, ops,
                                                                             states):
    """dense.yaml, no pruning: every weight updated. A layer of n weights reads W (2n
    bytes), dW as its WG wrote it (dense: 2n) and the state (2n a value a weight), writes W
    and the state, and does `ops` vector operations a weight: momentum on the 784 x 300
    layer reads 6 x 235,200 bytes and writes 4 x 235,200. Each WU runs on the vector unit
    (no MACs) right after its layer's WG and waits for that WG alone. (Without inter-layer
    reuse, which would keep dW on chip: the next test.)"""
    assert OPTIMIZERS[optimizer] == (ops, states)
    work = map_workload(lenet300(optimizer),
                        arch_view("dense.yaml", "mapping.inter_layer_reuse=false"))
    updates = [w for w in work if w.phase == WU]
    assert [w.name for w in updates] == ["4", "2", "0"]
    waits = phase_waits(work)
    for w in updates:
        n = WEIGHTS[w.name]
        i = work.index(w)
        assert (work[i - 1].name, work[i - 1].phase) == (w.name, WG) and waits[i] == i - 1
        assert work[i - 1].output_bytes == 2 * n               # dW, dense
        assert w.table["dram_read_bytes"].sum() == 2 * n * (2 + states)
        assert w.table["dram_write_bytes"].sum() == 2 * n * (1 + states)
        assert w.table["vector_ops"].sum() == ops * n
        assert w.table["macs"].sum() == 0 and w.on_vector_unit
    # nothing later waits for an update: the next phase waits for what it waited before
    last = work.index(updates[0])
    assert waits[last + 1] < last - 1


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_inter_layer_reuse_keeps_a_weight_gradient_on_chip_for_its_update(optimizer):
    """dense.yaml (inter-layer reuse on, 2 x 256 KiB buffer halves): every LeNet-300 layer's
    dW (2n bytes) fits, so its WG writes nothing to DRAM and its update reads only W and the
    state from DRAM (2n (1 + states)) but all three from the buffer (2n (2 + states)), in
    tiles of what the kept dW leaves of the buffer: (2 x 262,144 - 2n) // 2 bytes, less
    half of what else it keeps meanwhile (the 100 x 10 layer's BP's dX, 2 x 100 fp16
    values, stays for the next BP). With
    a 2 x 128 KiB buffer the 784 x 300 layer's dW (470,400 bytes) no longer fits: its WG
    writes it and its update reads it back from DRAM, as the smaller layers' still do not."""
    _, states = OPTIMIZERS[optimizer]
    half = 256 * 1024
    also_kept = {"4": 2 * 100 * 2, "2": 0, "0": 0}
    for capacity, not_kept in ((512, set()), (256, {"0"})):
        view = arch_view("dense.yaml", f"global_buffer.capacity_kib={capacity}")
        assert view.buffer_bytes == capacity * 1024 // 2
        work = map_workload(lenet300(optimizer), view)
        for i, w in enumerate(work):
            if w.phase != WU:
                continue
            n, wg = WEIGHTS[w.name], work[i - 1]
            kept = w.name not in not_kept
            assert w.input_resident == kept
            assert wg.table["dram_write_bytes"].sum() == (0 if kept else 2 * n)
            assert w.table["dram_read_bytes"].sum() == 2 * n * (1 + states + (not kept))
            assert w.table["glb_read_bytes"].sum() == 2 * n * (2 + states)
            assert w.table["dram_write_bytes"].sum() == 2 * n * (1 + states)
            if kept and capacity == 512:
                budget = (2 * half - 2 * n - also_kept[w.name]) // 2
                assert w.buffer_bytes == budget
                moved = 2 * n * (1 + states) + 2 * n * (1 + states)
                # at least the fewest tiles that fit it, more where the estimate ranks more
                # first (`vector.pass_tiles`), each within it
                assert len(w.table) >= -(-moved // budget)
                assert (w.table["held_bytes"] <= budget).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_update_fused_into_the_wg_stream_never_moves_dw(optimizer):
    """`vector_unit.fused_update`: every WG writes no dW, whatever its size (the 784 x 300
    layer's 470,400 bytes too, under 2 x 128 KiB halves, where reuse could not keep it), and
    keeps its whole budget; each update reads W and the state from DRAM, all three from the
    buffer. Without an update asked for, the switch changes nothing."""
    _, states = OPTIMIZERS[optimizer]
    view = arch_view("dense.yaml", "global_buffer.capacity_kib=256",
                     "vector_unit.fused_update=true")
    assert view.fused_update
    work = map_workload(lenet300(optimizer), view)
    updates = [w for w in work if w.phase == WU]
    assert [w.name for w in updates] == ["4", "2", "0"]
    for w in updates:
        n, wg = WEIGHTS[w.name], work[work.index(w) - 1]
        assert wg.phase == WG and not wg.output_written and wg.output_bytes == 2 * n
        assert wg.table["dram_write_bytes"].sum() == 0
        assert w.input_resident
        assert w.table["dram_read_bytes"].sum() == 2 * n * (1 + states)
        assert w.table["glb_read_bytes"].sum() == 2 * n * (2 + states)
        assert w.table["dram_write_bytes"].sum() == 2 * n * (1 + states)
    assert work[-1].buffer_bytes == view.buffer_bytes   # the 784 x 300 layer: no room held
    plain = map_workload(lenet300("none"), view)
    assert all(w.table["dram_write_bytes"].sum() == 2 * WEIGHTS[w.name]
               for w in plain if w.phase == WG)


def test_without_a_weight_update_the_iteration_is_ff_bp_wg():
    work = map_workload(lenet300("none"), arch_view("dense.yaml"))
    assert {w.phase for w in work} == {0, 1, 2}


def test_a_design_that_computes_kept_gradients_updates_kept_weights_in_its_format():
    """fine_grained.yaml on LeNet-300 pruned to 90% (magnitude): WG computes the kept
    weights' gradients only, so the update touches the kept ones: their values and state,
    with W as DRAM holds it (bitmap: a bit a weight besides the values) and dW as WG wrote
    it."""
    from mappings.tiling import stored_weight_bytes

    workload = lenet300("momentum", PruningSpec(method="magnitude", sparsity=0.9))
    view = arch_view("fine_grained.yaml")
    work = map_workload(workload, view)
    for i, w in enumerate(work):
        if w.phase != WU:
            continue
        layer = workload.layers[w.layer]
        layer = layer.unpack() if hasattr(layer, "unpack") else layer
        kept = int(layer.w_nz.sum())
        stored = stored_weight_bytes(layer, layer.w_nz, view)
        if w.name in workload.pruned_layers:   # (the classifier is left whole)
            assert kept < 0.2 * WEIGHTS[w.name] and stored < 2 * WEIGHTS[w.name]
        dw = work[i - 1].output_bytes   # (from DRAM unless WG left it on chip)
        assert w.table["dram_read_bytes"].sum() == stored + dw * (not w.input_resident) + 2 * kept
        assert w.table["glb_read_bytes"].sum() == stored + dw + 2 * kept
        assert w.table["dram_write_bytes"].sum() == stored + 2 * kept
        assert w.table["vector_ops"].sum() == 2 * kept


def test_dynamic_pruning_reads_its_pruned_weights_and_ranks_every_weight():
    """Dynamic pruning (Trainer's) makes each iteration's mask from every weight's magnitude,
    the pruned ones' too: the update of a layer it pruned also reads the n - k pruned
    weights' values, dense at 2 bytes (fp16), writes none of them, and compares each of
    the n weights once. trainer.yaml, momentum, LeNet-300 at 90%: a pruned layer reads
    stored + dW + 2k (state) + 2(n - k), writes stored + 2k, and does 2k + n ops; the
    classifier, left whole, as before (2k ops); magnitude pruning with the same masks'
    size pays neither."""
    from mappings.tiling import stored_weight_bytes

    workload = lenet300("momentum", PruningSpec(method="dynamic", sparsity=0.9))
    assert workload.pruned_layers == ("0", "2")
    view = arch_view("trainer.yaml")
    work = map_workload(workload, view)
    updates = [w for w in work if w.phase == WU]
    assert [w.name for w in updates] == ["4", "2", "0"]
    for w in updates:
        i, n = work.index(w), WEIGHTS[w.name]
        layer = workload.layers[w.layer].unpack()
        kept = int(layer.w_nz.sum())
        stored = stored_weight_bytes(layer, layer.w_nz, view)
        pruned = w.name in workload.pruned_layers
        assert (kept == round(0.1 * n)) if pruned else (kept == n)
        dw = work[i - 1].output_bytes * (not w.input_resident)
        assert w.table["dram_read_bytes"].sum() == stored + dw + 2 * kept + 2 * (n - kept)
        assert w.table["dram_write_bytes"].sum() == stored + 2 * kept
        assert w.table["vector_ops"].sum() == 2 * kept + n * pruned
        static = update_traffic(layer, view, "momentum", 1000, True)
        ranked = update_traffic(layer, view, "momentum", 1000, True, ranked=True)
        assert static == (stored + 1000 + 2 * kept, stored + 2 * kept, 2 * kept)
        assert ranked == (static[0] + 2 * (n - kept), static[1], static[2] + n)
    # a design that updates every weight (dense.yaml: WG computes all gradients) reads them
    # all as it stores them already (dense: 2n, the state 2n; no dW here): nothing more to
    # read, only the ranking
    layer = workload.layers[0].unpack()
    dense = arch_view("dense.yaml")
    assert (update_traffic(layer, dense, "momentum", 0, False, ranked=True)
            == (4 * WEIGHTS["0"], 4 * WEIGHTS["0"], 3 * WEIGHTS["0"]))


def test_dropback_updates_only_its_tracked_weights():
    """procrustes.yaml's weight generator regenerates DropBack's untracked weights, which are
    not stored: the update reads and writes the tracked ones alone, as DRAM holds them
    (`update_traffic`), their state beside them."""
    from mappings.tiling import stored_weight_bytes

    layer = lenet300("momentum", PruningSpec(method="dropback", sparsity=0.9)).layers[0]
    layer = layer.unpack() if hasattr(layer, "unpack") else layer
    view = arch_view("procrustes.yaml")
    tracked_map = layer.w_tracked & layer.w_nz
    tracked = int(tracked_map.sum())
    assert 0 < tracked < 0.2 * layer.w_nz.numel()
    stored = stored_weight_bytes(layer, tracked_map, view)
    assert stored < 2 * layer.w_nz.numel()
    read, write, ops = update_traffic(layer, view, "momentum", 1000, False)
    assert (read, write, ops) == (stored + 1000 + 2 * tracked, stored + 2 * tracked,
                                  2 * tracked)
    # without a generator every weight is stored, and (its gradients all computed) updated
    everyone = update_traffic(layer, replace(view, weight_generator=0.0), "momentum", 1000,
                              False)
    assert everyone[2] == 2 * layer.w_nz.numel()


def test_a_run_reports_the_update_as_its_phase_wu(tmp_path):
    """summary.json has the phase WU with the updates' DRAM bytes and energy, layers.csv a
    row per update on the vector unit, and a claim may name it; a run whose workload asks
    for none has no WU, and a claim on it is refused before simulating."""
    import desim
    from desim.errors import ConfigError
    from tests.small_experiments import lenet300_experiment

    path = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}})
    result = desim.run(path, ["workload.weight_update=momentum",
                              "claims=[{metric: runs.dense.phases.WU.dram_bytes, paper: 1, "
                              "tolerance: 1e12}]"])
    run = result.summary["runs"]["dense"]
    # momentum: 4 reads (W and its state; dW stays on chip, the previous test) and 4 writes
    # of 2n bytes
    moved = sum(8 * n for n in WEIGHTS.values())
    assert run["phases"]["WU"]["dram_bytes"] == moved and run["phases"]["WU"]["macs"] == 0
    layers = result.layers[result.layers["phase"] == "WU"]
    assert sorted(layers["layer"]) == ["0", "2", "4"]
    assert set(layers["unit"]) == {"vector_unit"} and set(layers["partition"]) == {""}
    # on the vector unit (LeNet-300's ReLUs are fused: its only work there), but not among
    # the vector layers' share of the time
    from desim.summary_text import vector_share

    assert run["units"]["vector_unit"]["cycles"] == run["phases"]["WU"]["cycles"] > 0
    assert vector_share(run) == 0
    assert "WU" not in desim.run(path).summary["runs"]["dense"]["phases"]
    with pytest.raises(ConfigError, match="will have no weight update phase WU"):
        desim.run(path, ["claims=[{metric: runs.dense.phases.WU.cycles, paper: 1, "
                         "tolerance: 1}]"])
