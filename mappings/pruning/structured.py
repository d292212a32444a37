"""Structured pruning: N:M, filter, channel, line, hybrid (HPPU), block and PE-wise.

Every method ranks its units by a norm, prunes exactly round(sparsity * units) of them (stable
sort: among equal scores the lower index goes first) and returns a bool mask of the weight's
shape, True = kept. A Linear weight (K, C) is handled as (K, C, 1, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from desim.errors import ConfigError
from mappings.pruning._util import (
    as_4d,
    as_matrix,
    check_sparsity,
    keep_top,
    pruned_count,
    require_divisible,
)


def _expand(keep: Tensor, weight: Tensor) -> Tensor:
    """Broadcast `keep` over the 4-D view of `weight` and give it `weight`'s shape."""
    return keep.expand(as_4d(weight).shape).reshape(weight.shape)


def n_m(weight: Tensor, n: int, m: int) -> Tensor:
    """N:M fine-grained structured sparsity (Mishra et al., NVIDIA Ampere, arXiv:2104.08378).

    In every group of `m` consecutive input channels c (for each k, r, s) the `n` weights of
    largest |w| are kept. C must be divisible by m. Sparsity is exactly 1 - n/m.
    """
    w = as_4d(weight.detach())
    check_n_m(weight.shape, n, m)
    k, c, r, s = w.shape
    groups = w.abs().reshape(k, c // m, m, r, s)
    return keep_top(groups, m - n, dim=2).reshape(weight.shape)


def check_n_m(shape: Sequence[int], n: int, m: int) -> None:
    """What `n_m` needs of a weight of `shape`: 0 <= n <= m, and C divisible by m (also
    checked on the model's layers before any capture, `check_layers`)."""
    if not 0 <= n <= m:
        raise ConfigError(f"N:M needs 0 <= n <= m, got n={n}, m={m}", key="n")
    require_divisible(shape[1], m, "input channels C", "m")


def filter_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

    Whole output channels k are pruned, round(sparsity * K) of them, smallest L2 norm first.
    """
    w = as_4d(weight.detach())
    norms = torch.linalg.vector_norm(w, dim=(1, 2, 3))
    keep = keep_top(norms, pruned_count(sparsity, w.shape[0]))
    return _expand(keep[:, None, None, None], weight)


def channel_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Input-channel pruning (He et al., "Channel Pruning", ICCV 2017).

    Whole input channels c across all k are pruned, round(sparsity * C) of them, smallest L2
    norm first.
    """
    w = as_4d(weight.detach())
    norms = torch.linalg.vector_norm(w, dim=(0, 2, 3))
    keep = keep_top(norms, pruned_count(sparsity, w.shape[1]))
    return _expand(keep[None, :, None, None], weight)


def line_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Line-wise pruning (HPPU): a line is one 1xS kernel row W[k, c, r, :].

    round(sparsity * K*C*R) lines are pruned, smallest L1 norm first. For a Linear weight a
    line is a single weight, so this is magnitude pruning.
    """
    w = as_4d(weight.detach())
    k, c, r, _ = w.shape
    keep = keep_top(w.abs().sum(-1).flatten(), pruned_count(sparsity, k * c * r))
    return _expand(keep.view(k, c, r, 1), weight)


def hybrid_channel_count(shape: tuple[int, ...], sparsity: float, channel_share: float) -> int:
    """Input channels the channel part of `hybrid_prune` removes for a weight of `shape`.

    The largest count whose weights do not exceed channel_share * sparsity of the layer,
    i.e. floor(channel_share * sparsity * C), capped so it never exceeds the line target.
    """
    sparsity = check_sparsity(sparsity)
    if not 0.0 <= channel_share <= 1.0:
        raise ConfigError(f"channel_share must be in [0, 1], got {channel_share}")
    k, c, r = (tuple(shape) + (1, 1))[:3]
    lines_per_channel = k * r
    target_lines = pruned_count(sparsity, k * c * r)
    channels = math.floor(channel_share * sparsity * c + 1e-9)  # epsilon: 0.5*0.4*10 -> 2
    return min(channels, target_lines // lines_per_channel)


def hybrid_prune(weight: Tensor, sparsity: float, channel_share: float = 0.5) -> Tensor:
    """HPPU hybrid weight pruning, channel-wise then line-wise.

    Source: the HPPU training processor's "hybrid weight pruning, channel-wise and line-wise",
    where a line is one 1xK row of a KxK kernel. Algorithm:

    1. Channel part: prune `hybrid_channel_count(...)` whole input channels c (across all k,
       like `channel_prune`), smallest L2 norm first - as many as fit in channel_share *
       sparsity of the weights without exceeding it.
    2. Line part: among the lines W[k, c, r, :] of the surviving channels, prune the smallest
       L1 norm ones until exactly round(sparsity * K*C*R) lines are pruned in total.

    For a Linear weight a line is a single weight. Returns the mask (True = kept).
    """
    w = as_4d(weight.detach())
    k, c, r, _ = w.shape
    channels = hybrid_channel_count(weight.shape, sparsity, channel_share)
    channel_keep = keep_top(torch.linalg.vector_norm(w, dim=(0, 2, 3)), channels)
    line_score = w.abs().sum(-1).masked_fill(~channel_keep[None, :, None], -math.inf)
    keep = keep_top(line_score.flatten(), pruned_count(sparsity, k * c * r))
    return _expand(keep.view(k, c, r, 1), weight)


def block_prune(weight: Tensor, sparsity: float, block: tuple[int, int] = (4, 4)) -> Tensor:
    """Block pruning (Narang et al., "Block-Sparse RNNs", 2017; BLK-REW, 2020).

    A unit is a block of bk output x bc input channels over all r, s; ceil(K/bk) * ceil(C/bc)
    units (edge blocks may be smaller). round(sparsity * units) blocks are pruned, smallest
    L2 norm first. With edge blocks the weights pruned miss sparsity, so a config's pruning
    takes only blocks that tile the layer (`check_block`, run first by `prune_model`).
    """
    bk, bc = block
    if bk < 1 or bc < 1:
        raise ConfigError(f"block sizes must be positive, got {block}")
    w = as_4d(weight.detach())
    k, c = w.shape[:2]
    energy = F.pad(w.pow(2).sum((2, 3)), (0, -c % bc, 0, -k % bk))
    kb, cb = energy.shape[0] // bk, energy.shape[1] // bc
    norms = energy.reshape(kb, bk, cb, bc).sum((1, 3)).sqrt()
    keep = keep_top(norms.flatten(), pruned_count(sparsity, kb * cb)).view(kb, cb)
    keep = keep.repeat_interleave(bk, 0).repeat_interleave(bc, 1)[:k, :c]
    return _expand(keep[:, :, None, None], weight)


def check_block(shape: Sequence[int], block: tuple[int, int]) -> None:
    """What a config's block pruning needs of a weight of `shape`: blocks that tile it (K
    divisible by bk, C by bc). Why: a smaller edge block counts as a whole unit, so the
    layer's pruned weights would miss the target sparsity (LeNet-5 at 0.5 with [7, 7]: 0.488),
    and a block-sparse datapath would pad it, a cost desim does not model."""
    for axis, what in enumerate(("output channels K", "input channels C")):
        if shape[axis] % block[axis]:
            raise ConfigError(f"{what} = {shape[axis]} must be divisible by the block's "
                              f"{block[axis]} (block {list(block)}): edge blocks would miss "
                              "the target sparsity", key="block")


def pe_wise_prune(weight: Tensor, sparsity: float, pe_rows: int, pe_cols: int) -> Tensor:
    """PE-wise structured pruning (Yang, He, Fan, "Harmonious Coexistence of Structured Weight
    Pruning and Ternarization for Deep Neural Networks", AAAI 2020).

    Definition used here: the matrix M = W.reshape(K, C*R*S) is processed in tiles of
    pe_rows x pe_cols; M[k, n] sits on PE (k % pe_rows, n % pe_cols). A group is the pe_cols
    weights that one PE row holds in one tile, M[k, j*pe_cols:(j+1)*pe_cols], one weight per
    PE of that row. PE row i owns the U = (K/pe_rows) * (C*R*S/pe_cols) groups of rows
    k = i (mod pe_rows); in every PE row exactly round(sparsity * U) groups are pruned,
    smallest L2 norm first. Hence every PE row and every PE keeps the same number of weights;
    the layer's pruned fraction is round(sparsity * U) / U. K must be divisible by pe_rows
    and C*R*S by pe_cols.
    """
    mat = as_matrix(weight.detach())
    check_pe_wise(weight.shape, pe_rows, pe_cols)
    k, cols = mat.shape
    norms = torch.linalg.vector_norm(mat.reshape(k, cols // pe_cols, pe_cols), dim=-1)
    per_row = norms.reshape(k // pe_rows, pe_rows, -1).transpose(0, 1).reshape(pe_rows, -1)
    keep = keep_top(per_row, pruned_count(sparsity, per_row.shape[1]), dim=1)
    keep = keep.reshape(pe_rows, k // pe_rows, -1).transpose(0, 1).reshape(k, -1, 1)
    return keep.expand(k, cols // pe_cols, pe_cols).reshape(weight.shape)


def check_pe_wise(shape: Sequence[int], pe_rows: int, pe_cols: int) -> None:
    """What `pe_wise_prune` needs of a weight of `shape`: its (K, C*R*S) matrix tiled by
    pe_rows x pe_cols (also checked on the model's layers before any capture)."""
    require_divisible(shape[0], pe_rows, "output channels K", "pe_rows")
    require_divisible(math.prod(shape[1:]), pe_cols, "C*R*S", "pe_cols")
