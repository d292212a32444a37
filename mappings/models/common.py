"""Building blocks shared by the models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MatMul(nn.Module):
    """`torch.matmul(a, b)` as a module, so that capture hooks see attention's products as
    layers (they have no weight: both operands are activations)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


class Fork(nn.Module):
    """A tensor handed to two branches (a residual block's body and shortcut), as a module so
    that capture sees where training sums the branches' gradients. The first copy goes to the
    branch that runs first; its gradient is the one written last in BP."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x


class Add(nn.Module):
    """The element-wise sum where two branches join (a residual add), as a module so that
    capture sees its data pass."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class ScaledSoftmax(nn.Module):
    """softmax(x / divisor) over the last dim (attention's scaled softmax), as a module so
    that capture sees its data pass; the scale is applied on its input stream, not as a pass
    of its own."""

    def __init__(self, divisor: float) -> None:
        super().__init__()
        self.divisor = divisor

    def forward(self, x: Tensor) -> Tensor:
        return (x / self.divisor).softmax(-1)


class ArgumentError(ValueError):
    """A model argument its builder refuses with the others given (heads not dividing dim):
    `build_model` says it as bad input of `workload.model_args.<arg>`, while any other
    error out of a builder stays a bug to be seen."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(message)
        self.arg = arg
