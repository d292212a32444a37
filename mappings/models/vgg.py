"""VGG-16 (Simonyan & Zisserman 2015).

- ImageNet, as torchvision's `vgg16`: thirteen 3x3 convs with ReLU (no batch norm), five
  max pools, adaptive 7x7 average pool, classifier 25088-4096-4096-1000 with dropout:
  138,357,544 parameters.
- CIFAR: the same convs with batch norm after each and a single Linear(512, classes)
  classifier (the common CIFAR VGG-16): 14,728,266 parameters at 10 classes.
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import nn

CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def _features(batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(cin, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    return layers


def vgg16(num_classes: PositiveInt = 1000, cifar: bool = False) -> nn.Module:
    """VGG-16 for ImageNet (224x224 input), or with `cifar=True` the batch-norm CIFAR variant
    (32x32 input)."""
    if cifar:
        return nn.Sequential(*_features(True), nn.Flatten(), nn.Linear(512, num_classes))
    return nn.Sequential(*_features(False), nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(4096, num_classes))
