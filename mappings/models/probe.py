"""A sparsity probe: one conv layer fed activations of a chosen density.

Processors quote their peak energy efficiency on a layer at stated sparsities (Trainer: "for
a 90% activation sparsity and 90% weight sparsity"). The probe builds that setting from
Gaussian input (`data: random`): a shifted ReLU, relu(x - t) with t the (1 - density)
quantile of N(0, 1), leaves `density` of the conv's inputs non-zero; the run's pruning
sets the weights' sparsity (`skip_first_conv: false`). A global average pool and a linear
head give the loss, so the conv has a real WG (its BP is not run: its input is the data).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, PositiveInt
from torch import nn

from mappings.models.common import ArgumentError


class SparsityProbe(nn.Module):
    def __init__(self, channels: int = 256, kernel: int = 3, density: float = 0.1,
                 num_classes: int = 10) -> None:
        super().__init__()
        if not 0 < density <= 1:
            raise ArgumentError("density", f"density must be in (0, 1], got {density}")
        normal = torch.distributions.Normal(0.0, 1.0)
        # density 1: no ReLU, every input as drawn (a shift by -inf would make them inf)
        self.threshold = float(normal.icdf(torch.tensor(1.0 - density))) if density < 1 \
            else None
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            x = torch.relu(x - self.threshold)
        return self.head(self.conv(x).mean((2, 3)))


def sparsity_probe(num_classes: PositiveInt = 10, channels: PositiveInt = 256,
                   kernel: PositiveInt = 3,
                   density: Annotated[float, Field(gt=0, le=1)] = 0.1) -> nn.Module:
    return SparsityProbe(channels, kernel, density, num_classes)
