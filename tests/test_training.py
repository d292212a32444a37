"""Real training for dynamic sparsity: masks, DropBack's k, accuracy, on bundled digits."""

import pytest
import torch
from torch import nn

from mappings.pruning import PruningSpec, regenerate
from mappings.training import TrainingSpec, train_and_capture


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def train(pruning: PruningSpec, iterations: int = 60, **kw):
    model = mlp()
    layers, masks, stats = train_and_capture(
        model, pruning, TrainingSpec(iterations=iterations, learning_rate=0.05, **kw),
        "digits", 32, (64,), 10, seed=0)
    return model, layers, masks, stats


def test_dense_training_learns_the_digits():
    _, layers, masks, stats = train(PruningSpec(method="dense"), iterations=120)
    assert masks == {}
    assert stats["accuracy"] > 0.75            # chance is 0.1
    assert [tuple(layer.w_nz.shape[:2]) for layer in layers] == [(128, 64), (64, 128), (10, 64)]


def test_dynamic_pruning_keeps_the_target_and_moves_its_masks():
    spec = PruningSpec(method="dynamic", sparsity=0.75)
    _, early, early_masks, _ = train(spec, iterations=2, capture_iteration=0)
    model, layers, masks, stats = train(spec, iterations=60)
    # both hidden Linear layers are pruned; the last one is skipped by default
    assert list(masks) == ["0", "2"]
    assert int(masks["2"].sum()) == round(0.25 * 64 * 128)
    assert int(layers[1].w_nz.sum()) == round(0.25 * 64 * 128)   # captured W obeys the mask
    assert not torch.equal(masks["2"], early_masks["2"])           # the mask moved
    assert stats["accuracy"] > 0.5             # 0.64 measured; chance is 0.1


def test_dynamic_pruning_updates_only_the_unpruned_weights():
    """Trainer's sparse training computes WG "only with unpruned weights", and so does the
    simulated WG: one SGD step moves no weight the iteration's mask prunes (every pruned
    weight had a gradient and moved before), and the kept ones whose gradient is not zero
    (a ReLU dead for the whole batch zeroes some)."""
    from mappings.training import _Dynamic

    model = mlp()
    stepper = _Dynamic(model, PruningSpec(method="dynamic", sparsity=0.75))
    masks = stepper.before(0)
    dense = {n: w.clone() for n, w in stepper.dense.items()}
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    model(x).pow(2).sum().backward()
    velocity = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    stepper.update(velocity, TrainingSpec(iterations=1))
    for name, mask in masks.items():
        moved = stepper.dense[name] != dense[name]
        assert not (moved & ~mask.bool()).any(), name
        assert moved.sum() > 0.9 * mask.sum(), name


def test_dropback_tracks_exactly_k_and_regenerates_the_rest():
    spec = PruningSpec(method="dropback", k=1000, seed=7)
    model, _, masks, stats = train(spec, iterations=40)
    assert sum(int(m.sum()) for m in masks.values()) == 1000
    # every untracked weight holds its initial value, regenerated from the seed
    moved = sum(int((model[i].weight.detach() != regenerate(str(i), model[i].weight.shape, 7))
                    .sum()) for i in (0, 2))
    assert 900 <= moved <= 1000
    assert stats["weight_compression"] == (64 * 128 * 2) / 1000
    assert stats["accuracy"] > 0.3             # 0.39 measured, 6% of weights; chance 0.1


def test_procrustes_dropback_captures_the_untracked_weights_as_zeros():
    """With init_decay < 1 (Procrustes) the untracked weights are d w0, decaying; the captured
    iteration computes them as zeros (its hardware skips them), so the captured W maps are
    the tracked masks, and training goes on with d w0 (restored after the capture).
    DropBack proper (1) computes them, non-zero."""
    spec = PruningSpec(method="dropback", k=1000, seed=7, init_decay=0.9)
    model, layers, masks, stats = train(spec, iterations=40, capture_iteration=20)
    assert sum(int(m.sum()) for m in masks.values()) == 1000
    assert sum(int(layer.w_nz.sum()) for layer in layers[:2]) <= 1000  # the tracked, at most
    # after the last of 40 steps d = 0.9^39: the untracked weights hold d w0, not zero
    d = 0.9 ** 39
    for i in (0, 2):
        w, mask = model[i].weight.detach(), masks[str(i)]
        start = regenerate(str(i), w.shape, 7) * d
        assert torch.allclose(w[~mask], start[~mask])
        assert (w[~mask] != 0).any()
    assert stats["weight_compression"] == (64 * 128 * 2) / 1000
    _, proper, _, _ = train(PruningSpec(method="dropback", k=1000, seed=7), iterations=40,
                            capture_iteration=20)
    assert sum(int(layer.w_nz.sum()) for layer in proper[:2]) > 0.99 * 64 * 128 * 2


def test_the_captured_iteration_neither_changes_the_training_nor_its_masks():
    """Where the capture runs otherwise than training (Procrustes' untracked weights as
    zeros), the captured iteration's step still takes training's gradients: the trained
    weights do not depend on which iteration is captured. And the masks returned are those
    in force at the captured iteration (they had been the last iteration's): dynamic
    pruning's captured W is exactly its mask then."""
    spec = PruningSpec(method="dropback", k=1000, seed=7, init_decay=0.9)
    trained = [torch.cat([p.detach().flatten() for p in train(spec, iterations=40,
                                                                 capture_iteration=at)[0]
                          .parameters()]) for at in (20, 39)]
    assert torch.equal(*trained)
    _, layers, masks, _ = train(PruningSpec(method="dynamic", sparsity=0.75), iterations=10,
                                capture_iteration=3)
    _, _, last, _ = train(PruningSpec(method="dynamic", sparsity=0.75), iterations=10)
    assert torch.equal(layers[1].w_nz.reshape(masks["2"].shape).bool(), masks["2"].bool())
    assert not torch.equal(masks["2"], last["2"])


def test_gradual_magnitude_pruning_reaches_its_target():
    spec = PruningSpec(method="magnitude", sparsity=0.9)
    _, _, masks, stats = train(spec, iterations=100, gradual=True)
    assert int(masks["2"].sum()) == round(0.1 * 64 * 128)
    assert stats["accuracy"] > 0.3             # 0.39 measured at 90% sparsity; chance 0.1


def test_dropback_tracks_the_largest_initial_weights_before_its_first_step():
    """A capture at iteration 0 computes with DropBack's masks before any step: the k
    weights of largest |w0| over the pruned layers, as the one-shot DropBack's (all-zero
    scores had left them to the ties: layer 0 untracked, layer 2 20% tracked)."""
    from mappings.pruning.dropback import regenerate

    spec = PruningSpec(method="dropback", k=1000, seed=7)
    _, _, masks, _ = train(spec, iterations=1)
    shapes = {"0": (128, 64), "2": (64, 128)}
    assert {name: tuple(m.shape) for name, m in masks.items()} == shapes
    w0 = torch.cat([regenerate(name, shape, 7).abs().flatten()
                    for name, shape in shapes.items()])
    tracked = torch.cat([masks[name].flatten() for name in shapes])
    assert int(tracked.sum()) == 1000
    assert w0[tracked].min() >= w0[~tracked].max()


def test_the_gradual_ramp_ends_where_its_fraction_says():
    """100 iterations at ramp_fraction 0.55 ramp over 55 (the target at iteration 54; the
    float product 55.000000000000004 had made it 56), at 0.07 over 7."""
    from mappings.training import _Gradual

    for fraction, end in ((0.55, 54), (0.07, 6), (1.0, 99), (0.5, 49)):
        gradual = _Gradual(mlp(), PruningSpec(method="magnitude", sparsity=0.8),
                           TrainingSpec(iterations=100, gradual=True, ramp_fraction=fraction))
        assert gradual.end == end, fraction


@pytest.mark.parametrize("iterations, ramp", [(1, 0.5), (4, 1.0), (10, 1.0), (10, 0.5)])
def test_the_gradual_schedule_reaches_its_target_by_the_captured_iteration(iterations, ramp):
    """The ramp's last iteration takes the target (it had been the iteration after it: a
    ramp over every iteration left the captured one short, 0.7875 of 0.8 at 4 iterations,
    and one iteration captured a dense network). 80% of layer 2's 64 x 128 weights."""
    spec = PruningSpec(method="magnitude", sparsity=0.8)
    _, layers, masks, _ = train(spec, iterations=iterations, gradual=True, ramp_fraction=ramp)
    assert int(masks["2"].sum()) == round(0.2 * 64 * 128)
    assert int(layers[1].w_nz.sum()) == round(0.2 * 64 * 128)


def test_the_final_loss_is_the_last_step_s_and_absent_without_one():
    """The captured iteration takes no loss step (capture runs it): one iteration has no
    loss to report, and says none rather than NaN (which summary.json would carry)."""
    _, _, _, one = train(PruningSpec(method="dense"), iterations=1)
    assert "final_loss" not in one and one["iterations"] == 1.0
    _, _, _, two = train(PruningSpec(method="dense"), iterations=2, capture_iteration=1)
    assert 0.5 < two["final_loss"] < 5.0   # ~ln(10) = 2.3 for an untrained 10-class net


def test_set_and_rigl_move_their_masks_at_constant_sparsity():
    for method in ("set", "rigl"):
        spec = PruningSpec(method=method, sparsity=0.8, update_every=5, regrow_fraction=0.3)
        _, _, first, _ = train(spec, iterations=1)
        model, layers, masks, stats = train(spec, iterations=60)
        for name in ("0", "2"):
            assert int(masks[name].sum()) == int(first[name].sum())   # sparsity exact
            assert not torch.equal(masks[name], first[name])          # masks moved
        assert int(layers[1].w_nz.sum()) <= int(masks["2"].sum())     # pruned stay zero
        assert stats["accuracy"] > 0.3, method


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_a_regrown_weight_starts_from_zero_without_momentum(method):
    """As RigL's authors' code grows a connection (its `reset_momentum`): the momentum its
    gradients built up while it was pruned is dropped, so its first step is the learning
    rate times its gradient, not a throw of accumulated velocity."""
    from mappings.training import _Regrow

    model = mlp()
    stepper = _Regrow(model, PruningSpec(method=method, sparsity=0.8, update_every=1))
    before = {name: mask.bool().clone() for name, mask in stepper.masks.items()}
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    model(x).pow(2).sum().backward()
    velocity = {n: torch.ones_like(p) for n, p in model.named_parameters()}  # built up
    stepper.update(velocity, TrainingSpec(iterations=1))
    for name, old in before.items():
        new = stepper.masks[name].bool()
        grown = new & ~old
        assert int(grown.sum()) == round(0.3 * int(old.sum())), name  # as many as dropped
        assert (velocity[f"{name}.weight"][grown] == 0).all(), name
        assert (velocity[f"{name}.weight"][new & old] != 0).all(), name  # the kept: kept
        assert (stepper.layers[name].weight[grown] == 0).all(), name


def test_mnist_training_batches_and_held_out_set_mix_all_classes():
    from mappings.datasets import batch, held_out
    _, y = batch("mnist", 200, (784,), 10)
    _, y_test = held_out("mnist", 200, (784,), 10)
    assert len(set(y.tolist())) == 10 and len(set(y_test.tolist())) == 10


def test_digits_read_from_their_file_are_scikit_learns():
    """`datasets` reads the digits file scikit-learn ships without importing scikit-learn:
    the same images and labels, of the same types, as its `load_digits`."""
    import numpy as np
    from sklearn.datasets import load_digits

    from mappings.datasets import _digits
    images, labels = _digits()
    expected = load_digits()
    assert images.dtype == expected.images.dtype and labels.dtype == expected.target.dtype
    assert np.array_equal(images, expected.images) and np.array_equal(labels, expected.target)


def test_a_capture_iteration_outside_the_run_is_bad_input():
    from desim.configio import validate
    from desim.errors import ConfigError

    assert validate(TrainingSpec, {"iterations": 3, "capture_iteration": 2}, "t.yaml")
    for at in (3, -1):
        with pytest.raises(ConfigError, match=rf"t\.yaml: capture_iteration: {at} is not one "
                                              r"of the iterations 0\.\.2"):
            validate(TrainingSpec, {"iterations": 3, "capture_iteration": at}, "t.yaml")


def test_a_diverging_training_is_bad_input_before_any_capture_is_simulated():
    """A learning rate of 10^30 sends the loss to NaN: its NaN weights would be captured as
    non-zeros and simulated, the loss reaching summary.json as NaN. The key is named."""
    from desim.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        train_and_capture(mlp(), PruningSpec(method="dense"),
                          TrainingSpec(iterations=5, learning_rate=1e30), "digits", 32, (64,),
                          10, seed=0)
    assert err.value.key == "workload.training.learning_rate"
    assert "training diverged: the loss is nan at iteration" in err.value.message
    assert "expected a smaller learning rate (got 1e+30)" in err.value.message


@pytest.mark.parametrize("at", [0, None])
def test_an_inference_trains_as_the_training_does(at):
    """An inference after training captures its iteration in eval mode (dropout off, batch
    norms on running statistics), and takes that iteration's training step as a training
    does: the trained weights, running statistics and accuracy are the training's (the
    eval-mode capture's gradients had fed the step, and the statistics missed a batch)."""
    def trained(inference: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                              nn.Dropout(0.3), nn.Linear(64, 10))
        _, _, stats = train_and_capture(
            model, PruningSpec(method="dense"),
            TrainingSpec(iterations=5, learning_rate=0.05, capture_iteration=at),
            "digits", 16, (64,), 10, seed=0, inference=inference)
        return model.state_dict(), stats

    (weights, stats), (weights_inf, stats_inf) = trained(False), trained(True)
    assert stats == stats_inf
    assert all(torch.equal(weights[key], weights_inf[key]) for key in weights)


def test_regrowth_steps_are_those_regrows_after_names():
    """`regrows_after` (which the workload asks of RigL's captured iteration) names the
    steps after which `_Regrow` moves its masks: with update_every 3, those after
    iterations 2 and 5 (0-based) of 7."""
    from mappings.training import _Regrow, regrows_after

    model = mlp()
    pruning = PruningSpec(method="rigl", sparsity=0.8, update_every=3)
    stepper = _Regrow(model, pruning)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    velocity = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    moved = []
    for it in range(7):
        before = {name: mask.clone() for name, mask in stepper.masks.items()}
        model.zero_grad()
        model(x).pow(2).sum().backward()
        stepper.update(velocity, TrainingSpec(iterations=7))
        if any(not torch.equal(before[n], m) for n, m in stepper.masks.items()):
            moved.append(it)
    assert moved == [2, 5] == [it for it in range(7) if regrows_after(pruning, it)]


@pytest.mark.parametrize("captured, update_step", [(2, False), (3, True)])
def test_rigl_computes_dense_weight_gradients_on_its_update_steps_only(captured, update_step):
    """RigL reads every weight's gradient on its update steps alone (regrowing where |dW| is
    largest); between them it trains as SET does, with the kept weights' gradients. LeNet-300
    at 90%, 4 iterations, update_every 2: the step after iteration 3 is an update, the one
    after iteration 2 is not. On prior_sparse_trainer.yaml (skips zero X and dY, and pruned
    weights' gradients where no algorithm reads them) layer 0's WG processes, over the
    batch's images b, sum_b sum_(o, i) [dY[b, o] != 0] [X[b, i] != 0], times the kept mask
    [W[o, i] != 0] where the captured iteration is no update; dW is written dense (784 x 300
    fp16 values: 470,400 bytes) on the update step."""
    from mappings.mapper import map_workload
    from mappings.specs import WorkloadSpec
    from mappings.workload import capture_workload, reads_pruned_gradients
    from tests.views import arch_view

    pruning = PruningSpec(method="rigl", sparsity=0.9, update_every=2)
    training = TrainingSpec(iterations=4, capture_iteration=captured)
    assert reads_pruned_gradients(pruning, training) == update_step
    assert not reads_pruned_gradients(pruning, None)                # no step: no regrowth
    assert not reads_pruned_gradients(pruning.model_copy(update={"method": "set"}), training)
    workload = capture_workload(WorkloadSpec(model="lenet300", batch=2, input_shape=[784],
                                             data="mnist", seed=0, training=training), pruning)
    assert workload.pruned_grads_unused == (not update_step)
    layer = workload.layers[0].unpack()
    dy, x = (m.reshape(2, -1).float() for m in (layer.dy_nz, layer.x_nz))   # (as 1 x 1 maps)
    pairs = torch.einsum("bo,bi->oi", dy, x)
    kept = layer.w_nz.reshape(pairs.shape)
    assert 0 < int(kept.sum()) <= round(0.1 * 784 * 300)
    expected = int(pairs.sum()) if update_step else int((pairs * kept).sum())
    wg = next(w for w in map_workload(workload, arch_view("prior_sparse_trainer.yaml"))
              if w.layer == 0 and w.phase == 2)
    assert int(wg.table["processed_macs"].sum()) == expected
    assert (wg.output_bytes == 784 * 300 * 2) == update_step
