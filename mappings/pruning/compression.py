"""Structured compression: PermDNN permuted diagonals, CirCNN block-circulant projection and
TWN ternarization."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from desim.errors import ConfigError
from mappings.pruning._util import as_4d, as_matrix, require_divisible


def permuted_diagonal(weight: Tensor, p: int, seed: int = 0) -> Tensor:
    """PermDNN (Deng et al., MICRO 2018) permuted-diagonal mask.

    M = W.reshape(K, C*R*S) is split into p x p blocks; block (a, b) keeps exactly the
    entries (i, (i + o_ab) mod p), i = 0..p-1, with offsets o_ab drawn from
    torch.Generator().manual_seed(seed). Both dims must be divisible by p. Sparsity = 1 - 1/p.
    """
    mat = as_matrix(weight)
    check_permuted_diagonal(weight.shape, p)
    k, cols = mat.shape
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, p, (k // p, cols // p, 1, 1), generator=gen).to(weight.device)
    i = torch.arange(p, device=weight.device)
    blocks = i[None, :] == (i[:, None] + offsets) % p  # (K/p, cols/p, p, p)
    return blocks.permute(0, 2, 1, 3).reshape(weight.shape)


def check_permuted_diagonal(shape: Sequence[int], p: int) -> None:
    """What `permuted_diagonal` needs of a weight of `shape`: its (K, C*R*S) matrix tiled by
    p x p blocks (also checked on the model's layers before any capture)."""
    require_divisible(shape[0], p, "output channels K", "p")
    require_divisible(math.prod(shape[1:]), p, "C*R*S", "p")


def check_block_circulant(shape: Sequence[int], b: int) -> None:
    """What `block_circulant` needs of a weight of `shape`: K and C divisible by b (also
    checked on the model's layers before any capture)."""
    require_divisible(shape[0], b, "output channels K", "b")
    require_divisible(shape[1], b, "input channels C", "b")


def _circulant_blocks(weight: Tensor, b: int) -> tuple[Tensor, tuple[int, ...]]:
    """(R, S, K/b, C/b, b, b) view of the (K, C) matrices at each kernel position."""
    w = as_4d(weight)
    check_block_circulant(weight.shape, b)
    k, c, r, s = w.shape
    blocks = w.permute(2, 3, 0, 1).reshape(r, s, k // b, b, c // b, b).transpose(3, 4)
    return blocks, (k, c, r, s)


def block_circulant(weight: Tensor, b: int) -> Tensor:
    """CirCNN (Ding et al., MICRO 2017): project onto block-circulant matrices.

    For a Linear weight the (K, C) matrix, for a Conv2d weight the (K, C) matrix at every
    kernel position (r, s), is split into b x b blocks (K and C divisible by b). Each block is
    replaced by the circulant matrix nearest in Frobenius norm: entry (i, j) becomes the mean
    of the block's wrapped diagonal (j - i) mod b. Row i of the result is its first row rolled
    by i. Returns the projected weight (same shape and dtype).
    """
    blocks, (k, c, r, s) = _circulant_blocks(weight.detach(), b)
    i = torch.arange(b, device=weight.device)
    along_diag = (i[:, None] + i[None, :]) % b  # [i, d] -> column of diagonal d in row i
    first_row = blocks.gather(-1, along_diag.expand(blocks.shape)).mean(-2)  # (..., b) by d
    diag_of = (i[None, :] - i[:, None]) % b  # [i, j] -> diagonal (j - i) mod b
    proj = first_row.unsqueeze(-2).expand(blocks.shape).gather(-1, diag_of.expand(blocks.shape))
    proj = proj.transpose(3, 4).reshape(r, s, k, c).permute(2, 3, 0, 1)
    return proj.reshape(weight.shape).contiguous()


def is_block_circulant(weight: Tensor, b: int, atol: float = 1e-6) -> bool:
    """True when every b x b block (see `block_circulant`) is circulant within `atol`."""
    return torch.allclose(weight, block_circulant(weight, b), rtol=0.0, atol=atol)


def ternarize(weight: Tensor, threshold_ratio: float = 0.7) -> tuple[Tensor, float]:
    """Ternary weight networks (Li & Liu, "Ternary Weight Networks", arXiv:1605.04711, 2016).

    delta = threshold_ratio * mean|w| (TWN's 0.7 approximation); t = sign(w) where |w| > delta,
    else 0; scale alpha = mean |w| over |w| > delta (0.0 when none). Returns (t as int8 in
    {-1, 0, +1}, alpha); alpha * t approximates the weight.
    """
    if threshold_ratio < 0:
        raise ConfigError(f"threshold_ratio must be >= 0, got {threshold_ratio}")
    mag = weight.detach().abs()
    delta = threshold_ratio * mag.mean()
    above = mag > delta
    ternary = (torch.sign(weight.detach()) * above).to(torch.int8)
    scale = float(mag[above].mean()) if bool(above.any()) else 0.0
    return ternary, scale
