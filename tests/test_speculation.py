"""Trainer's ReLU speculation: the prediction, its counting and the speculator component."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from desim.errors import ConfigError
from desim.experiment import load_arch
from mappings.capture import CaptureNeeds, capture
from mappings.counting import BP, FF, WG, SkipPolicy, processed_map
from mappings.planner import tile_phase
from mappings.speculation import exponent_only, normalized
from mappings.target import HardwareView

ARCH = Path(__file__).resolve().parents[1] / "configs" / "arch"
HW = dict(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2)


def test_exponent_only_keeps_sign_and_exponent():
    t = torch.tensor([3.0, -0.75, 0.0, 1.0, 5.5, -1e-3])
    expected = torch.tensor([2.0, -0.5, 0.0, 1.0, 4.0, -2.0**-10])
    assert torch.equal(exponent_only(t), expected)


def _capture(model: nn.Module, x: torch.Tensor):
    out_shape = model(x).shape
    return capture(model, x, torch.ones(out_shape), loss_fn=lambda out, t: (out * t).sum())


def test_powers_of_two_are_predicted_exactly():
    """Operands that are already powers of two lose nothing: the prediction is the ReLU's
    exact non-zero map, with no false zeros."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(exponent_only(torch.randn_like(conv.weight)))
    x = exponent_only(torch.randn(2, 3, 6, 6))
    (layer,) = _capture(nn.Sequential(conv, nn.ReLU()), x)
    assert layer.y_spec is not None
    assert torch.equal(layer.y_spec, conv(x) > 0)
    assert layer.spec_false_zeros == 0
    assert layer.spec_exact_nonzeros == int((conv(x) > 0).sum())


def test_batch_norm_between_uses_the_predictions_own_statistics():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(4, 6, 3, bias=False), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 4, 8, 8)
    expected = normalized(bn, nn.functional.conv2d(exponent_only(x),
                                                   exponent_only(conv.weight.detach()))) > 0
    (layer,) = _capture(nn.Sequential(conv, bn, nn.ReLU(inplace=True)), x)
    assert torch.equal(layer.y_spec, expected)
    exact = bn(conv(x)) > 0
    assert layer.spec_false_zeros == int((exact & ~expected).sum())
    assert 0 < layer.spec_false_zeros < 0.2 * int(exact.sum())  # a crude but useful guess


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x) + x)


def test_a_residual_add_before_the_relu_ends_the_chain():
    (layer,) = _capture(_Residual(), torch.randn(2, 4, 5, 5))
    assert layer.y_spec is None


def _speculated_layer():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU())
    x = torch.relu(torch.randn(2, 4, 10, 10))          # some zero inputs, as after a ReLU
    (layer,) = _capture(model, x)
    return layer


def test_ff_computes_only_outputs_predicted_nonzero():
    layer = _speculated_layer()
    policy = SkipPolicy(weights=True, activations=True, gradients=True)
    flags = dict(skip_zero_weights=True, skip_zero_activations=True, skip_zero_gradients=True)
    plain = HardwareView(**HW, **flags)
    spec = HardwareView(**HW, **flags, speculate_relu_outputs=True)
    full = processed_map(layer, FF, policy, pruned_grads_unused=True)
    kept = int((full * layer.y_spec.transpose(0, 1)).sum())
    assert 0 < kept < int(full.sum())
    t0, tot0 = tile_phase(layer, 0, FF, plain, policy, pruned_grads_unused=True)
    t1, tot1 = tile_phase(layer, 0, FF, spec, policy, pruned_grads_unused=True)
    assert tot1["processed_macs"] == t1["processed_macs"].sum() == kept
    assert t1["speculated_ops"].sum() == tot0["processed_macs"] == int(full.sum())
    assert t0["speculated_ops"].sum() == 0
    assert tot1["effectual_macs"] == tot0["effectual_macs"]   # the operands' pairs, unchanged
    for phase in (BP, WG):  # only FF is speculated
        a, ta = tile_phase(layer, 0, phase, plain, policy, pruned_grads_unused=True)
        b, tb = tile_phase(layer, 0, phase, spec, policy, pruned_grads_unused=True)
        assert ta == tb and b["speculated_ops"].sum() == 0


def _predicted(*args: int):
    """trainer.yaml's accelerator after its speculator's one `predict(*args)` from time 0;
    the times (ps) it ended at."""
    from arch.accelerator import Accelerator
    from desim.module import Simulator

    sim = Simulator()
    acc = Accelerator(sim, load_arch(ARCH / "trainer.yaml"))
    done = []

    def run():
        yield from acc.speculator.predict(*args)
        done.append(sim.env.now)

    sim.env.process(run())
    sim.env.run()
    return acc, done


def test_speculator_times_and_prices_its_products():
    """trainer.yaml's speculator, 4,096 products a cycle at 500 MHz: 10,000 products take 3
    cycles (2 ns each); each costs 0.13 pJ x 28/45 (45 -> 28 nm); it reads 6 of every 16
    operand bits (FP16's sign and exponent) from the local buffers."""
    acc, done = _predicted(10_000, 1600)
    assert done == [3 * 2000]
    assert acc.speculator.actions["local_buffer_read_bytes"] == 600
    energy = acc.energy_pj({acc.speculator.path: acc.speculator.actions}, 0, 0)
    assert energy["speculator.ops"] == pytest.approx(10_000 * 0.13 * 28 / 45)


def test_speculator_matches_as_many_pairs_as_it_has_products():
    """trainer.yaml pairs operands by index matching: its speculator's 10,000 products are
    the pairs it matched among the 25,000 it scanned, so it counts 10,000 matched pairs,
    priced as the PEs' (a selector entry, 0.03 pJ x 28/45 at 28 nm): 186.67 pJ; not the
    25,000 scanned (466.67 pJ)."""
    acc, _ = _predicted(10_000, 1600, 25_000)
    assert acc.speculator.actions["matched_pairs"] == 10_000
    energy = acc.energy_pj({acc.speculator.path: acc.speculator.actions}, 0, 0)
    assert energy["index_matching.matched_pairs"] == pytest.approx(10_000 * 0.03 * 28 / 45)
    assert energy["index_matching.matched_pairs"] == pytest.approx(186.667, abs=1e-3)


def test_speculator_counts_and_prices_the_pairs_it_scans():
    """The same tile's 25,000 scanned pairs: counted by the speculator and priced in the
    design's index matching at a scan's price, 0.03 / 8 pJ a pair at 45 nm, x 28/45 at 28 nm:
    25,000 x 0.00375 x 28/45 = 58.33 pJ (the PEs scanned nothing here, so all of it is the
    speculator's); the scan keeps pace with the products, still 3 cycles."""
    acc, done = _predicted(10_000, 1600, 25_000)
    assert done == [3 * 2000]
    assert acc.speculator.actions["scanned_pairs"] == 25_000
    energy = acc.energy_pj({acc.speculator.path: acc.speculator.actions}, 0, 0)
    assert energy["index_matching.scanned_pairs"] == pytest.approx(
        25_000 * 0.03 / 8 * 28 / 45)
    assert energy["index_matching.scanned_pairs"] == pytest.approx(58.333, abs=1e-3)


def test_speculation_needs_a_floating_point_datapath():
    with pytest.raises(ConfigError, match="floating-point") as err:
        load_arch(ARCH / "trainer.yaml", ["pe_cluster.precision=int8"])
    assert "trainer.yaml" in str(err.value)


def test_a_speculative_pass_zeroes_what_the_prediction_zeroes():
    """With `speculative`, the ReLU hands on the speculating hardware's output: the next
    layer's input is non-zero exactly where the exact ReLU and the prediction both are."""
    torch.manual_seed(3)
    first, second = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)
    model = nn.Sequential(first, nn.ReLU(inplace=True), second)
    x = torch.randn(2, 3, 9, 9)
    exact, speculative = _capture(model, x), None
    out_shape = model(x).shape
    speculative = capture(model, x, torch.ones(out_shape), speculative=True,
                          loss_fn=lambda out, t: (out * t).sum())
    predicted = exact[0].y_spec
    assert torch.equal(speculative[0].y_spec, predicted)
    assert exact[0].spec_false_zeros > 0        # so the two passes really differ
    assert torch.equal(exact[1].x_nz, torch.relu(first(x)) != 0)
    assert torch.equal(speculative[1].x_nz, (torch.relu(first(x)) != 0) & predicted)
    assert model[1].inplace                      # restored after the pass


def test_workload_set_gives_one_run_its_own_workload(tmp_path):
    from desim.experiment import load_experiment

    (tmp_path / "e.yaml").write_text(f"""
name: e
workload: {{model: lenet300, batch: 2, data: random}}
runs:
  - {{name: exact, arch: {ARCH / 'trainer.yaml'}}}
  - {{name: spec, arch: {ARCH / 'trainer.yaml'}, workload_set: ["speculative_relu=true"]}}
baseline: exact
""")
    experiment = load_experiment(tmp_path / "e.yaml")
    assert not experiment.workloads["exact"].speculative_relu
    assert experiment.workloads["spec"].speculative_relu
    assert experiment.workloads["spec"].batch == 2
    bad = (tmp_path / "e.yaml").read_text().replace("speculative_relu=true", "speculativ=true")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="runs.1.workload_set.speculativ"):
        load_experiment(tmp_path / "bad.yaml")


def test_speculative_relu_needs_a_model():
    from mappings.workload import WorkloadSpec

    with pytest.raises(ValueError, match="speculative_relu needs a `model`"):
        WorkloadSpec(scalesim_topology="t.csv", speculative_relu=True)


def test_only_a_run_with_a_speculator_reports_the_speculation(tmp_path):
    """Two runs share one capture of LeNet-300-100, which predicts the outputs of the two
    layers that feed a ReLU; only the run on trainer.yaml has a speculator, so only its
    summary lists what the speculation predicted (the other's would describe hardware it
    does not have)."""
    from desim.api import run

    (tmp_path / "e.yaml").write_text(f"""
name: e
workload: {{model: lenet300, batch: 2, data: random}}
runs:
  - {{name: trainer, arch: {ARCH / 'trainer.yaml'}}}
  - {{name: dense, arch: {ARCH / 'dense.yaml'}}}
baseline: dense
""")
    runs = run(tmp_path / "e.yaml").summary["runs"]
    spec = {k for k in runs["trainer"]["workload"] if k.startswith("speculat")}
    assert spec == {"speculated_layers", "speculated_zero_fraction",
                    "speculation_false_zero_rate", "speculation_false_zero_mass"}
    assert runs["trainer"]["workload"]["speculated_layers"] == 2
    assert not {k for k in runs["dense"]["workload"] if k.startswith("speculat")}
    assert runs["dense"]["workload"]["activation_sparsity"] == \
        runs["trainer"]["workload"]["activation_sparsity"]


def test_a_capture_without_predictions_keeps_every_other_map():
    """Without `relu_predictions` (no speculating hardware reads the capture), it leaves out the
    predictions and nothing else: every non-zero map, the fused ReLU's included, is the
    predicting capture's."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 9, 9)
    target = torch.ones(model(x).shape)
    loss = lambda out, t: (out * t).sum()  # noqa: E731
    full = capture(model, x, target, loss_fn=loss)
    bare = capture(model, x, target, loss_fn=loss, needs=CaptureNeeds(relu_predictions=False))
    assert [a.y_spec is not None for a in full] == [True, True, False]
    assert all(b.y_spec is None and b.spec_exact_nonzeros == 0 for b in bare)
    assert bare[1].y_relu_nz is not None  # conv -> ReLU: the fused ReLU's output is kept
    for a, b in zip(full, bare, strict=True):
        for key in ("x_nz", "w_nz", "dy_nz", "dx_nz", "y_nz", "y_relu_nz"):
            one, other = getattr(a, key), getattr(b, key)
            assert (one is None and other is None) or torch.equal(one, other), key


def test_applying_the_speculation_needs_its_predictions():
    from mappings.speculation import ReluSpeculator

    with pytest.raises(ValueError, match="needs its predictions"):
        ReluSpeculator(apply=True, predict=False)


def test_a_design_without_speculator_needs_no_predictions():
    """The runner captures without predictions when no run's design speculates: a dense
    design's run is the same either way, and a speculating design refuses such a capture
    rather than count its work from predictions that were never made."""
    from desim.runner import simulate
    from mappings.specs import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    spec = WorkloadSpec(model="lenet300", batch=2, data="random")
    pruning = PruningSpec(method="magnitude", sparsity=0.5)
    with_predictions = capture_workload(spec, pruning)
    without = capture_workload(spec, pruning, CaptureNeeds(relu_predictions=False))
    dense = load_arch(ARCH / "dense.yaml")
    one, other = simulate("a", dense, with_predictions), simulate("a", dense, without)
    assert one.total_ps == other.total_ps and one.energy_j == other.energy_j
    assert one.layers.equals(other.layers)
    with pytest.raises(ValueError, match="design needs"):
        simulate("t", load_arch(ARCH / "trainer.yaml"), without)


def test_what_follows_a_speculated_layer_reads_what_it_wrote(tmp_path):
    """configs/models/tiny_cnn.py on trainer.yaml (bitmap activations, speculation, BP that
    skips ReLU-masked gradients), each phase's data through DRAM (inter-layer reuse off).
    The stem's conv is speculated: its FF writes only the outputs predicted non-zero, and
    its batch norm reads exactly those bytes in FF, and again in BP beside its dY; it had
    read the exact output, dense before its ReLU (1,024 B of bitmap + 2 B x 8,192). Its dY
    is what the max pool's BP wrote, unmasked: a pooling does not skip ReLU-masked
    gradients (it had been read as masked, fewer bytes than were written). A design that
    says its BN reads every output in BP (`speculator.norm_backward_reads: every`) reads
    them there."""
    import desim

    (tmp_path / "e.yaml").write_text(f"""
name: e
workload: {{model: {ARCH.parent / 'models' / 'tiny_cnn.py'}:tiny_cnn, model_args: {{width: 16}},
           input_shape: [3, 16, 16], batch: 2, data: random, num_classes: 10}}
runs:
  - {{name: trainer, arch: {ARCH / 'trainer.yaml'}}}
baseline: trainer
""")
    def moved(*sets: str) -> tuple:
        """DRAM bytes read and written by each layer-phase of the run with `sets`."""
        result = desim.run(tmp_path / "e.yaml", ["observe.tiles=true",
                                                  "arch.*.mapping.inter_layer_reuse=false",
                                                  *sets])
        sums = result.tiles.groupby(["layer", "phase"])[["dram_read_bytes",
                                                         "dram_write_bytes"]].sum()
        return sums["dram_read_bytes"], sums["dram_write_bytes"]

    read, written = moved()
    conv_out = written["stem.0", "FF"]
    assert conv_out < 1024 + 2 * 8192 * 3 // 4   # the prediction left a good part out
    assert read["stem.1", "FF"] == conv_out
    assert read["block.body.1", "FF"] == written["block.body.0", "FF"]
    assert read["stem.1", "BP"] == conv_out + written["stem.3", "BP"]
    # Exact training's batch norm reads every output in BP (x-hat at every position): the
    # exact output, dense before its ReLU; FF reads what the conv wrote as before.
    read, written = moved("arch.*.speculator.norm_backward_reads=every")
    assert written["stem.0", "FF"] == read["stem.1", "FF"] == conv_out
    assert read["stem.1", "BP"] == 1024 + 2 * 8192 + written["stem.3", "BP"]


def test_the_tile_search_takes_a_speculated_output_at_its_written_bytes():
    """`written_ratio`, what the tile search takes the results' moves to be over dense: a
    speculated conv + ReLU writes in bitmap ceil(E / 8) + 2 B a non-zero of the outputs both
    the ReLU and the prediction keep; without speculation, those the ReLU keeps; WG's dW is
    taken dense."""
    from mappings.tiling import written_ratio

    layer = _speculated_layer()
    flags = dict(activation_format="bitmap", fused_relu=True)
    spec = HardwareView(**HW, **flags, speculate_relu_outputs=True)
    plain = HardwareView(**HW, **flags)
    elems = layer.y_nz.numel()
    kept = int((layer.y_relu_nz & layer.y_spec).sum())
    assert 0 < kept < int(layer.y_relu_nz.sum())
    assert written_ratio(layer, FF, spec) == (-(-elems // 8) + 2 * kept) / (2 * elems)
    assert written_ratio(layer, FF, plain) == (
        (-(-elems // 8) + 2 * int(layer.y_relu_nz.sum())) / (2 * elems))
    assert written_ratio(layer, WG, spec) == 1.0


def test_the_tile_search_takes_kept_weight_gradients_at_their_written_bytes():
    """A WG that computes the kept weights' gradients alone writes them in the weight format
    (bitmap: 2 B a kept weight and a bit a weight): the tile search's ratio is theirs over
    dense (it had taken them dense); a WG of every weight's gradient writes them dense."""
    from dataclasses import replace

    from mappings.tiling import written_ratio

    torch.manual_seed(0)
    layer = _speculated_layer()
    layer = replace(layer, w_nz=torch.rand(layer.w_nz.shape) < 0.3)
    hw = HardwareView(**HW, weight_format="bitmap")
    elems, kept = layer.w_nz.numel(), int(layer.w_nz.sum())
    assert 0 < kept < elems
    assert written_ratio(layer, WG, hw, kept_gradients=True) == (
        (2 * kept + -(-elems // 8)) / (2 * elems))
    assert written_ratio(layer, WG, hw) == 1.0
