"""LeNet-300-100 and LeNet-5 (LeCun et al. 1998), the variants pruning papers use.

- LeNet-300-100: 784-300-100-10 fully connected with ReLU: 266,610 parameters.
- LeNet-5, Caffe's variant (as in Han et al. 2015 and ADMM-NN): conv 20 5x5, max pool,
  conv 50 5x5, max pool, fc 500, fc 10, on 1x28x28: 431,080 parameters.
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import nn


def lenet300(num_classes: PositiveInt = 10) -> nn.Module:
    """LeNet-300-100 on flattened 28x28 inputs, shape (batch, 784)."""
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, num_classes))


def lenet5(num_classes: PositiveInt = 10) -> nn.Module:
    """LeNet-5 (Caffe) on (batch, 1, 28, 28); ReLU after fc 500 only, as Caffe's."""
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(50 * 4 * 4, 500), nn.ReLU(),
                         nn.Linear(500, num_classes))
