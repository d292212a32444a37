"""ResNet-18 and ResNet-50 (He et al., "Deep residual learning", CVPR 2016), as torchvision.

ImageNet variants: 7x7 stride-2 stem, max pool, four stages; conv layers without bias, batch
norm after each; the stride is on the 3x3 conv (torchvision's "ResNet v1.5"); a 1x1 conv and
batch norm on the shortcut when the shape changes; the fork into body and shortcut, and
their add, are modules (`Fork`, `Add`) so that capture sees their data passes. Parameters:
ResNet-18 11,689,512; ResNet-50 25,557,032 (1,000 classes).
`cifar=True`: the usual CIFAR stem, a 3x3 stride-1 conv and no max pool (ResNet-18 at 10
classes: 11,173,962 parameters).
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import Tensor, nn

from mappings.models.common import Add, Fork


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(*_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(width, cout, 3))
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride))
                         if stride != 1 or cin != cout else nn.Identity())
        self.fork, self.add, self.relu = Fork(), Add(), nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        into_body, into_shortcut = self.fork(x)
        return self.relu(self.add(self.body(into_body), self.shortcut(into_shortcut)))


class Bottleneck(BasicBlock):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.body = nn.Sequential(*_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
                                  *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(width, cout, 1))
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride))
                         if stride != 1 or cin != cout else nn.Identity())
        self.fork, self.add, self.relu = Fork(), Add(), nn.ReLU(inplace=True)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock], depths: list[int], num_classes: int,
                 cifar: bool) -> None:
        super().__init__()
        if cifar:
            stem = [*_conv_bn(3, 64, 3), nn.ReLU(inplace=True)]
        else:
            stem = [*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        layers, cin = [], 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            for i in range(depth):
                layers.append(block(cin, width, 2 if i == 0 and stage > 0 else 1))
                cin = width * block.expansion
        self.features = nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def resnet18(num_classes: PositiveInt = 1000, cifar: bool = False) -> ResNet:
    """ResNet-18: BasicBlocks [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, cifar)


def resnet50(num_classes: PositiveInt = 1000, cifar: bool = False) -> ResNet:
    """ResNet-50: Bottlenecks [3, 4, 6, 3], expansion 4."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, cifar)
