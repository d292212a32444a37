"""ReLU speculation: which forward outputs a ReLU will zero, predicted before computing them.

Trainer (shared/seeds/001) removes "implicit redundant operations, which have nonzeros'
input, weight, or output, but are ineffective for training": in FF, the MACs of an output
that the following ReLU sets to zero. Knowing which outputs those are needs a prediction, made
cheaply before the full-precision pass. The abstract does not say how; we model GANPU's
"exponent-only ReLU speculation" (Kang et al., ISSCC 2020 and JSSC 2021; HPPU's reference
[8]; assumption): every operand is reduced to its sign and exponent,
sign(v) * 2^floor(log2|v|), so a product is an exponent add; the reduced outputs give each
output's predicted sign, and only outputs predicted positive are computed in full. GANPU's
abstract places the prediction in "lightweight" PEs; desim gives it a stage of its own.

With batch norm between the layer and its ReLU (conv -> BN -> ReLU), the sign is that of the
normalized output. We normalize the predicted outputs with their own batch statistics
(assumption: the statistics come from the prediction pass, which is what a BN unit decoupled
from the full pass, Trainer's third feature, makes available before it). That is not exact
training: BN's BP needs every output, and desim's BN reads only those the layer wrote while
the layer's BP and WG take the exact gradient (docs/PAPERS.md brackets the effect).

The prediction is wrong in two ways: an output predicted zero that is positive (a *false
zero*: the hardware outputs 0 where the exact value is not; it changes the training), and one
predicted positive that the ReLU zeroes (computed in vain; harmless). By default desim
captures the exact iteration and counts the speculative hardware's work from the prediction;
the false zeros are reported (`speculation_false_zero_rate`). With `apply` (the workload's
`speculative_relu`) the ReLU's output is replaced by the speculating hardware's, false zeros
included, so they reach the later layers, the gradients and, when training, the weights.

`ReluSpeculator` follows a forward pass through hooks: a conv or linear layer's output, then
optionally a batch norm that takes exactly that tensor (the same data), then a ReLU that takes
exactly the result. Anything else in between (a residual add, pooling, a functional ReLU)
ends the chain: that layer is not speculated.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

RELUS = (nn.ReLU, nn.ReLU6)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def exponent_only(t: torch.Tensor) -> torch.Tensor:
    """sign(t) * 2^floor(log2|t|): the value an operand keeps with its mantissa dropped.

    A float32 tensor of normal numbers and zeros is that with its mantissa bits cleared
    (+ 0.0 makes -0 +0, as sign(0) does, and leaves the others): the same bits as frexp and
    ldexp, 3 to 6 times faster. Subnormals, infinities and NaNs (exponent bits all 0 or all
    1) take frexp."""
    if t.dtype == torch.float32:
        bits = t.view(torch.int32)
        field = bits & 0x7F800000  # the exponent bits
        if not bool(((field == 0x7F800000) | ((field == 0) & (t != 0))).any()):
            return (bits & ~0x7FFFFF).view(torch.float32).add_(0.0)
    mantissa, exponent = torch.frexp(t)   # t = m * 2^e, 0.5 <= |m| < 1 (0 for t = 0)
    return torch.ldexp(torch.sign(mantissa), exponent - 1)


def predicted_outputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A conv's or linear layer's outputs from exponent-only operands (the bias kept exact)."""
    xe, we = exponent_only(x), exponent_only(module.weight.detach())
    bias = None if module.bias is None else module.bias.detach()
    if isinstance(module, nn.Linear):
        return F.linear(xe, we, bias)
    return F.conv2d(xe, we, bias, module.stride, module.padding, module.dilation,
                    module.groups)


def normalized(bn: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Batch norm of predicted outputs `y`: in training, with y's own batch statistics."""
    dims = [d for d in range(y.dim()) if d != 1]
    shape = [1, -1] + [1] * (y.dim() - 2)
    if bn.training or bn.running_mean is None:
        mean, var = y.mean(dims), y.var(dims, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    out = (y - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + bn.eps)
    if bn.affine:
        out = out * bn.weight.detach().reshape(shape) + bn.bias.detach().reshape(shape)
    return out


@dataclass
class Speculation:
    """One layer's prediction: the outputs predicted non-zero after the ReLU, and how the
    prediction compares with the ReLU's exact output."""

    predicted_nonzero: torch.Tensor | None  # bool, the layer's output shape (None: not
                                            # predicted, `ReluSpeculator.predict`)
    false_zeros: int                 # exact non-zero outputs predicted zero
    exact_nonzeros: int              # non-zero outputs of the ReLU
    false_zero_mass: float           # the false zeros' share of the ReLU output's sum
    relu_out_nz: torch.Tensor        # bool: the ReLU's output as handed on (with `apply`,
                                     # the speculating hardware's)
    through_batchnorm: bool          # a batch norm sits between the layer and the ReLU


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same data: a module's output as its hook sees it and as the next module gets it
    (a full backward hook hands on an alias, not the object itself)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape


class ReluSpeculator:
    """Follows conv/linear -> [batch norm] -> ReLU chains of a forward pass (module hooks).
    With `apply`, `other` returns the ReLU's output as the speculating hardware makes it
    (a forward hook's return value replaces the module's output); with `record`, each
    chain's prediction and how it compares with the exact ReLU go into `results`.
    Without `predict` (no speculating hardware reads this pass) the chains are followed and
    each ReLU's exact output recorded, but nothing is predicted: the predictions' float
    passes cost a third of a capture."""

    def __init__(self, apply: bool = False, record: bool = True, predict: bool = True) -> None:
        if apply and not predict:
            raise ValueError("applying the speculation needs its predictions")
        self.apply, self.record, self.predict = apply, record, predict
        self._pending: tuple[torch.Tensor, str, torch.Tensor | None, bool] | None = None
        self.results: dict[str, Speculation] = {}

    def layer(self, name: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        with torch.no_grad():
            pred = predicted_outputs(module, x.detach()) if self.predict else None
            self._pending = (out, name, pred, False)

    def other(self, module: nn.Module, x: torch.Tensor, out: torch.Tensor
              ) -> torch.Tensor | None:
        """Any other hooked module: a batch norm or a ReLU continues or closes a chain."""
        pending, self._pending = self._pending, None
        if pending is None or not same_tensor(x, pending[0]):
            return None
        _, name, pred, through_batchnorm = pending
        if isinstance(module, BATCHNORMS):
            with torch.no_grad():
                pred = None if pred is None else normalized(module, pred)
                self._pending = (out, name, pred, True)
            return None
        if not isinstance(module, RELUS):
            return None
        if pred is None:
            if self.record:
                self.results[name] = Speculation(None, 0, 0, 0.0, out.detach() != 0,
                                                 through_batchnorm)
            return None
        nonzero = pred > 0
        if self.record:
            self.results[name] = _compare(nonzero, out.detach(), self.apply, through_batchnorm)
        return out * nonzero if self.apply else None


def _compare(nonzero: torch.Tensor, y: torch.Tensor, applied: bool,
             through_batchnorm: bool) -> Speculation:
    """A prediction against the ReLU's exact output `y`."""
    exact, lost = y != 0, y * ~nonzero
    total = float(y.abs().sum())
    return Speculation(nonzero, int((exact & ~nonzero).sum()), int(exact.sum()),
                       float(lost.abs().sum()) / total if total else 0.0,
                       exact & nonzero if applied else exact, through_batchnorm)


@contextmanager
def speculating(model: nn.Module) -> Iterator[ReluSpeculator]:
    """Run `model`'s forward passes as hardware with ReLU speculation does: every ReLU that
    closes a chain outputs zero where the prediction says so (training iterations that are
    not captured; `capture(..., speculative=True)` does the same for the captured one)."""
    speculator = ReluSpeculator(apply=True, record=False)
    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(
                lambda m, args, out: speculator.layer("", m, args[0], out)))
        elif isinstance(module, RELUS + BATCHNORMS):
            handles.append(module.register_forward_hook(
                lambda m, args, out: speculator.other(m, args[0], out)))
    try:
        yield speculator
    finally:
        for h in handles:
            h.remove()
