"""MobileNetV2 (Sandler et al. 2018), width 1.0, as torchvision's: inverted residual blocks of
1x1 expansion, 3x3 depthwise and 1x1 projection convs with batch norm and ReLU6; 3,504,872
parameters at 1,000 classes.
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import Tensor, nn

from mappings.models.common import Add, Fork

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = _conv_bn(cin, hidden, 1) if expansion != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, relu=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            self.fork, self.add = Fork(), Add()

    def forward(self, x: Tensor) -> Tensor:
        if not self.residual:
            return self.body(x)
        into_body, skip = self.fork(x)
        return self.add(self.body(into_body), skip)


def mobilenet_v2(num_classes: PositiveInt = 1000) -> nn.Module:
    """MobileNetV2, width 1.0 (every channel count already a multiple of 8)."""
    layers: list[nn.Module] = _conv_bn(3, 32, 3, 2)
    cin = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += _conv_bn(cin, 1280, 1)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(1280, num_classes))
