"""CirCNN's block-circulant layers in closed form (Ding et al., "CirCNN: Accelerating and
Compressing Deep Neural Networks Using Block-Circulant Weight Matrices", MICRO 2017).

A K x C weight matrix made of (K/b) x (C/b) circulant blocks of size b x b is stored by each
block's first row (its FFT, b real numbers' worth): b-fold fewer weights. Its product with a
vector x runs in the frequency domain, y_i = IFFT(sum_j FFT(w_ij) o FFT(x_j)):

- FFT(w_ij) is computed offline and stored;
- C/b FFTs of the input blocks x_j and K/b inverse FFTs of the output blocks (the sums over j
  are taken in the frequency domain, before the inverse);
- (K/b)(C/b) element-wise products of b complex numbers: K C / b complex MACs.

Op count used here: a radix-2 FFT of size b has (b/2) log2(b) butterflies; a butterfly (one
complex multiply, two complex adds) and a complex MAC each cost 4 real MACs (4 real
multiplies, their adds folded). So one matrix-vector product costs

    4 K C / b + 2 (K + C) log2(b)      real MACs, against K C dense,

and the ratio `fft_mac_ratio` = 4 / b + 2 log2(b) (1/K + 1/C) tends to 4 / b for large layers
(a compute reduction of b / 4; up to b = 4, b = 4 included, the FFT route costs more than the
dense product: there the products alone, 4/4, match it and the transforms come on top).
Conservative simplifications: no real-input FFT symmetry (which would about halve the FFT and
product work); a convolution is R*S such products, one per kernel position, each with its own
input FFTs (no reuse across kernel positions). BP (the transposed product) has the same count
with K and C swapped, and WG (each block's first-row gradient, a circular correlation of X and
dY blocks accumulated in the frequency domain) the same products and transforms, so the ratio
serves all three phases.
"""

from __future__ import annotations

import math

from desim.errors import ConfigError


def _check(b: int) -> None:
    if b < 2 or b & (b - 1):
        raise ConfigError(f"circulant block size b must be a power of two >= 2, got {b}")


def fft_ops(b: int) -> int:
    """Butterflies of one radix-2 FFT of size b: (b/2) log2(b)."""
    _check(b)
    return b // 2 * int(math.log2(b))


def fft_real_macs(b: int, k: int, c: int) -> int:
    """Real MACs of one K x C block-circulant matrix-vector product by FFT (see above)."""
    _check(b)
    if k % b or c % b:
        raise ConfigError(f"a {k} x {c} matrix is not made of {b} x {b} blocks")
    complex_macs = (k // b) * (c // b) * b + (k // b + c // b) * fft_ops(b)
    return 4 * complex_macs


def fft_mac_ratio(b: int, k: int, c: int) -> float:
    """Effective MACs of the FFT route over the dense product's K C: 4/b + 2 log2 b (1/K + 1/C)."""
    return fft_real_macs(b, k, c) / (k * c)


def storage_ratio(b: int) -> int:
    """Dense weights over stored weights: b (one row of b values per b x b block)."""
    _check(b)
    return b
