"""Building blocks shared by the models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MatMul(nn.Module):
    """`torch.matmul(a, b)` as a module, so that capture hooks see attention's products as
    layers (they have no weight: both operands are activations)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)
