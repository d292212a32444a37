"""A small CNN for `workload.model: "../models/tiny_cnn.py:tiny_cnn"` (configs/experiments/
custom_model.yaml): the shape of a model file desim simulates.

Every step that computes is a module desim counts: nn.Conv2d and nn.Linear, nn.BatchNorm2d,
nn.ReLU, nn.MaxPool2d / nn.AdaptiveAvgPool2d, and for the residual block a `Fork` (the
tensor handed to body and shortcut) and an `Add` (where they join) from
mappings.models.common. Reshapes (nn.Flatten, view, ...) are free. A functional call that
computes (`x + y`, `torch.relu(x)`, `F.conv2d`) would be left out of the counts, so desim
refuses it.
"""

from __future__ import annotations

from torch import Tensor, nn

from mappings.models.common import Add, Fork


class Residual(nn.Module):
    """Two 3x3 conv + batch norm layers around an identity shortcut, then a ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.fork, self.add, self.relu = Fork(), Add(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        into_body, shortcut = self.fork(x)
        return self.relu(self.add(self.body(into_body), shortcut))


class TinyCNN(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2))
        self.block = Residual(width)
        self.head = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.stem(x)))


def tiny_cnn(width: int = 16, num_classes: int = 10) -> nn.Module:
    """The factory the experiment names: `width` comes from workload.model_args, and
    `num_classes` from workload.num_classes (desim passes it, as the parameter exists)."""
    return TinyCNN(width, num_classes)
