"""The tile-fit check before any capture (`desim.elaborate`, `planner.geometry_misfit`):
from one batch of the untrained model, it says what the mapper would say of a buffer too
small, and never refuses what the mapper maps; and a pruning a layer cannot take is said
there too, not after the capture."""

from dataclasses import replace

import pytest

from desim.errors import ConfigError
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.planner import geometry_misfit, tile_phase
from mappings.specs import WorkloadSpec
from mappings.workload import untrained
from tests.test_cli import ROOT, assert_config_error, copy_configs, desim, edit_yaml
from tests.views import arch_view


@pytest.fixture(scope="module")
def lenet5_layers():
    """LeNet-5's layers from one iteration, its backward pass included: the mapper maps
    them with their gradients (the check's own iteration has its forward pass alone, and
    the check reads the layers' shapes alone)."""
    import torch

    from mappings.capture import capture
    from mappings.datasets import batch
    from mappings.workload import checked_model

    spec = WorkloadSpec(model="lenet5", batch=2)
    model, shape = checked_model(spec)
    gen = torch.Generator().manual_seed(spec.seed)
    return [p.unpack() for p in capture(model, *batch("random", 2, shape, 10, generator=gen),
                                        packed=True)]


def test_the_checks_iteration_has_the_shapes_of_a_whole_one(lenet5_layers):
    """The check's untrained iteration runs forward only (`geometry_only`): every layer, its
    flags and the shapes of X, W and dY are those of a whole iteration's."""
    checked = [p.unpack() for p in untrained(WorkloadSpec(model="lenet5", batch=2)).layers]
    assert [(c.name, c.x_nz.shape, c.w_nz.shape, c.dy_nz.shape, c.needs_input_grad,
             c.weight_trained) for c in checked] == [
        (w.name, w.x_nz.shape, w.w_nz.shape, w.dy_nz.shape, w.needs_input_grad,
         w.weight_trained) for w in lenet5_layers]
    assert not any(c.dy_nz.any() for c in checked)   # no gradient was computed


@pytest.mark.parametrize("arch", ["dense.yaml", "hppu.yaml"])
def test_the_check_agrees_with_the_mapper_on_every_layer_phase(lenet5_layers, arch):
    """For budgets from 128 B to 8 KiB, a phase passes the check exactly when the mapper
    finds it a tile (hppu.yaml compacts channels: there the check may only be weaker), and
    where neither does, both say the same: the need of the plan nearest to fitting (the
    mapper had said its first plan's, the whole reduction's: 12,216 bytes where 8,128, two
    chunks, were enough)."""
    view = arch_view(arch)
    policy = SkipPolicy(weights=view.skip_zero_weights, activations=view.skip_zero_activations,
                        gradients=view.skip_zero_gradients)
    compared = refused = 0
    for budget in (128, 256, 512, 1024, 2048, 4096, 8192):
        hw = replace(view, buffer_bytes=budget)
        for i, layer in enumerate(lenet5_layers):
            for phase in (FF, BP, WG):
                misfit = geometry_misfit(layer, phase, hw)
                try:
                    tile_phase(layer, i, phase, hw, policy, pruned_grads_unused=True)
                    mapped = True
                except ConfigError as err:
                    mapped = False
                    assert "smallest tile" in err.message or "partial sums" in err.message
                    said = err.message
                assert not (misfit is not None and mapped), (budget, i, phase)
                if not hw.channel_compaction:
                    assert (misfit is None) == mapped, (budget, i, phase)
                    if misfit is not None:
                        assert misfit.message == said, (budget, i, phase)
                compared += 1
                refused += misfit is not None
    assert compared == 7 * len(lenet5_layers) * 3 and 0 < refused < compared


def test_the_check_takes_two_images_and_gives_the_verdict_of_the_whole_batch():
    """The untrained iteration takes two images whatever the batch (a tile is one image at
    least; WG tries chunks of one image at any batch): at every budget each layer-phase
    fits exactly when it fits at batch 8, and an FF or BP misfit says the same."""
    import torch

    from mappings.capture import capture
    from mappings.datasets import batch
    from mappings.workload import checked_model

    spec = WorkloadSpec(model="lenet5", batch=8)
    two = [p.unpack() for p in untrained(spec).layers]
    model, shape = checked_model(spec)
    gen = torch.Generator().manual_seed(spec.seed)
    eight = [p.unpack() for p in capture(model, *batch("random", 8, shape, 10, generator=gen),
                                         packed=True)]
    assert {layer.x_nz.shape[0] for layer in two} == {2}
    assert {layer.x_nz.shape[0] for layer in eight} == {8}
    view = arch_view("dense.yaml")
    refused = 0
    for budget in (128, 256, 512, 1024, 2048, 4096, 8192):
        hw = replace(view, buffer_bytes=budget)
        for small, whole in zip(two, eight, strict=True):
            for phase in (FF, BP, WG):
                a, b = geometry_misfit(small, phase, hw), geometry_misfit(whole, phase, hw)
                assert (a is None) == (b is None), (budget, small.name, phase)
                if a is not None and phase != WG:
                    assert a.message == b.message
                refused += a is not None
    assert refused > 0


def test_a_model_that_multiplies_activations_is_checked_at_its_batch():
    """A transformer block's attention matmuls take the batch as their groups (4 heads)."""
    layers = untrained(WorkloadSpec(model="transformer_block", batch=3, num_classes=4,
                                    data="random")).layers
    assert [p.unpack().groups for p in layers if p.unpack().kind == "matmul"] == [12, 12]


@pytest.mark.parametrize("model, batches, runs", [
    ("lenet5", (4, 8, 2), 1),            # two images whatever the batch: one iteration
    ("lenet5", (1, 4), 2),               # batch 1 takes one image
    ("transformer_block", (2, 4, 2), 2),  # MatMul: its batch is its groups
])
def test_an_axis_of_batch_sizes_runs_the_untrained_iteration_once(model, batches, runs,
                                                                     monkeypatch):
    """A sweep's points share one untrained iteration across batch sizes when it takes two
    images whatever the batch (it was run again for each batch), and its tile check."""
    import desim.elaborate
    import mappings.workload
    from desim.elaborate import Shared, elaborate
    from desim.experiment import load_experiment

    made, checked = [], []
    real, fit = mappings.workload.untrained, desim.elaborate._check_tiles_fit
    monkeypatch.setattr(mappings.workload, "untrained",
                        lambda spec: made.append(spec.batch) or real(spec))
    monkeypatch.setattr(desim.elaborate, "_check_tiles_fit",
                        lambda *a: checked.append(1) or fit(*a))
    shared = Shared()
    for batch in batches:
        sets = [f"workload.batch={batch}", f"workload.model={model}",
                "workload.input_shape=null", "workload.num_classes=4", "workload.data=random"]
        elaborate(load_experiment(ADMM_LENET5, [*sets, "runs.1.pruning={method: dense}"]),
                  shared)
    assert len(made) == runs and len(checked) == 2 * runs  # two designs each time


def test_desim_check_refuses_a_buffer_too_small_before_any_training(tmp_path):
    """dropback_lenet trains for 600 iterations before its capture: the check does not.
    The smallest tile of layer 0's FF (784 inputs cut into 8 chunks of 98, the partial sums
    spilled): 16 channels x 98 weights and 98 inputs at 2 bytes, and 16 outputs at 8 (a
    partial sum read back and one gathered, 4 bytes each): 3,136 + 196 + 128."""
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "dense.yaml", lambda d: d["global_buffer"].update(capacity_kib=1))
    result = desim("check", str(configs / "experiments" / "dropback_lenet.yaml"))
    assert_config_error(result, "dropback_lenet.yaml: runs.0.arch:", "layer 0 FF: the smallest "
                        "tile (16 channels x 1 row) needs 3460 bytes but the global buffer "
                        "gives a tile 512 bytes; enlarge the buffer or shrink the batch, or use "
                        "fewer PE clusters (of the 16, it deals one channel to each of 16)",
                        "(run 'dense', architecture ../arch/dense.yaml: "
                        "global_buffer.capacity_kib 1)")
    assert "set by" not in result.stderr   # the file's own value


@pytest.mark.parametrize("sets, setter", [
    (["arch.*.global_buffer.capacity_kib=1"], "--set arch.*.global_buffer.capacity_kib=1"),
    (["arch.*.global_buffer.capacity_kib=64", "arch.dense.global_buffer.capacity_kib=1"],
     "--set arch.dense.global_buffer.capacity_kib=1"),   # the last one applied
    (["runs.0.arch_set=[global_buffer.capacity_kib=1]"],
     "runs.0.arch_set item global_buffer.capacity_kib=1"),
])
def test_a_buffer_too_small_names_the_item_that_set_it(sets, setter):
    """dense.yaml holds 512 KiB: the error names what made it 1 KiB."""
    args = [a for item in sets for a in ("--set", item)]
    result = desim("check", str(ROOT / "configs" / "experiments" / "dropback_lenet.yaml"), *args)
    assert_config_error(result, "(run 'dense', architecture ../arch/dense.yaml: "
                        f"global_buffer.capacity_kib 1, set by {setter})")


ADMM_LENET5 = str(ROOT / "configs" / "experiments" / "admm_lenet5.yaml")


@pytest.mark.parametrize("pruning, fragments", [
    ("{method: permuted_diagonal, p: 3}",
     ["admm_lenet5.yaml: runs.1.pruning.p: layer '2' (Conv2d, weight [50, 20, 5, 5]): output "
      "channels K = 50 must be divisible by p = 3 (run 'fine_grained', pruning "
      "permuted_diagonal)"]),
    ("{method: n_m, n: 2, m: 7}",
     ["runs.1.pruning.m: layer '2' (Conv2d, weight [50, 20, 5, 5]): input channels C = 20 "
      "must be divisible by m = 7"]),
    # a pruning that leaves a layer no weight: by its values (TWN's threshold over the seeded
    # weights, as the capture prunes them; it gave a 23x speedup) or by its shape
    ("{method: ternarize, threshold_ratio: 100}",
     ["runs.1.pruning.threshold_ratio: layer '2' (Conv2d, weight [50, 20, 5, 5]): ternarize "
      "leaves it no non-zero weight (threshold_ratio 100)"]),
    ("{method: filter, sparsity: 0.99}",
     ["runs.1.pruning.sparsity: layer '2' (Conv2d, weight [50, 20, 5, 5]): sparsity 0.99 "
      "prunes all 50 filters: no weight left"]),
    # README: a block that does not divide a layer stops (it pruned 0.488 of LeNet-5 at 0.5)
    ("{method: block, block: [7, 7], sparsity: 0.5}",
     ["runs.1.pruning.block: layer '2' (Conv2d, weight [50, 20, 5, 5]): output channels "
      "K = 50 must be divisible by the block's 7 (block [7, 7])"]),
])
def test_desim_check_refuses_a_pruning_a_layer_cannot_take(pruning, fragments):
    """LeNet-5's second conv (K = 50, C = 20): what the capture would say after it trained,
    said by the check, with the run's pruning key and the layer."""
    result = desim("check", ADMM_LENET5, "--set", f"runs.1.pruning={pruning}")
    assert_config_error(result, *fragments)


def test_desim_run_refuses_a_pruning_a_layer_cannot_take_before_any_capture():
    from desim.experiment import load_experiment
    from desim.runner import run

    experiment = load_experiment(ADMM_LENET5, ["runs.1.pruning={method: block_circulant, b: 7}"])
    captured = []
    with pytest.raises(ConfigError) as err:
        run(experiment, capture=lambda workload, pruning: captured.append(pruning))
    assert captured == []
    assert err.value.key == "runs.1.pruning.b"
    assert "layer '2' (Conv2d, weight [50, 20, 5, 5]): output channels K = 50 must be " \
           "divisible by b = 7" in err.value.message


def test_desim_run_names_the_run_of_a_pruning_that_empties_a_layer():
    """The capture's own check (a pruned layer with no non-zero weight) names the run's
    pruning key too, as the check does, when elaboration is skipped (a sweep's point)."""
    from desim.experiment import load_experiment
    from desim.runner import run

    experiment = load_experiment(ADMM_LENET5,
                                 ["runs.1.pruning={method: ternarize, threshold_ratio: 100}"])
    with pytest.raises(ConfigError) as err:
        run(experiment, elaborated=True)
    assert err.value.key == "runs.1.pruning.threshold_ratio"
    assert err.value.file == ADMM_LENET5
