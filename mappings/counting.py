"""Counting: the MACs each output of each training phase needs, from the non-zero maps.

A convolution of 0/1 maps counts, for every output, the pairs of operands that meet there:
`conv2d(X != 0, W != 0)` gives each output of FF its number of effectual MACs. The same holds
for BP (`conv2d_input` of dY and W) and WG (`conv2d_weight` of X and dY). The counts are exact
in float32 while below 2**24 per output (the largest reduction here is N*P*Q of a WG output);
they are kept as int32 (half the memory of int64: the tiler reads these maps many times)
and summed exactly by `exact_sum`.

Three maps per phase:
- `nominal`: every pair whose operands are in bounds (padding excluded); the layer's MACs.
  The three phases run over the same set of index tuples, so their totals are equal, and equal
  N*K*(C/g)*R*S*P*Q when there is no padding.
- `effectual`: pairs whose operands are all non-zero (and, in WG, only kept weights when
  the pruning algorithm never uses pruned weights' gradients).
- `processed`: what a given hardware performs: it skips only the zeros it can detect.

A phase's output layout for tiling is (A, images, rows, L): A the output channels the PEs
share out (FF: K, BP: C, WG: K), rows and L the output's rows and row length (WG: one "image",
rows = input channels, L = R*S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from mappings.capture import LayerCapture

FF, BP, WG = 0, 1, 2
WU = 3  # the optimizer's weight update (`workload.weight_update`): no MACs
MAX_EXACT = 2**24


PHASE_NAMES = ("FF", "BP", "WG")


@dataclass(frozen=True)
class SkipPolicy:
    """Which zeros a datapath detects and skips. An operand's flag is True (in every phase
    it takes part in), False, or the names of the phases it is skipped in (Procrustes skips
    zero activations in WG and not in FF: `("WG",)`)."""

    weights: bool = False
    activations: bool | tuple[str, ...] = False   # X, in FF and WG
    gradients: bool | tuple[str, ...] = False     # dY, in BP and WG
    pruned_weight_gradients: bool = False  # WG of pruned weights, when the algorithm
    # never uses their gradients

    def skips_activations(self, phase: int) -> bool:
        """Whether zero X are skipped in `phase` (X takes part in FF and WG)."""
        return phase != BP and _named(self.activations, phase)

    def skips_gradients(self, phase: int) -> bool:
        """Whether zero dY are skipped in `phase` (dY takes part in BP and WG)."""
        return phase != FF and _named(self.gradients, phase)

    @property
    def dense(self) -> bool:
        return not (self.weights or self.activations or self.gradients
                    or self.pruned_weight_gradients)


def _named(flag: bool | tuple[str, ...], phase: int) -> bool:
    if isinstance(flag, bool):
        return flag
    return phase < len(PHASE_NAMES) and PHASE_NAMES[phase] in flag  # WU: no MACs


def _maps(layer: LayerCapture, phase: int, x: torch.Tensor, w: torch.Tensor,
          dy: torch.Tensor) -> torch.Tensor:
    """Per-output pair counts for one phase, from float 0/1 operands, in tiling layout."""
    return _convolved(phase, x, w, dy, layer.stride, layer.padding, layer.dilation,
                      layer.groups)


def _convolved(phase: int, x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor, st: int,
               pad: int, dil: int, g: int) -> torch.Tensor:
    """`_maps` of a layer of that stride, padding, dilation and groups."""
    if phase == FF:
        out = F.conv2d(x, w, None, st, pad, dil, g)           # (N, K, P, Q)
        return out.permute(1, 0, 2, 3)
    if phase == BP:
        out = conv2d_input(tuple(x.shape), w, dy, st, pad, dil, g)  # (N, C, H, W)
        return out.permute(1, 0, 2, 3)
    out = conv2d_weight(x, tuple(w.shape), dy, st, pad, dil, g)    # (K, C/g, R, S)
    k, cg, r, s = out.shape
    return out.reshape(k, 1, cg, r * s)


def count_map(layer: LayerCapture, phase: int, *, x_nz: bool, w_nz: bool, dy_nz: bool,
              mask_wg: bool = False) -> torch.Tensor:
    """Pair counts per output (int32, tiling layout), using the non-zero map of the operands
    flagged True and all-ones for the others."""
    def operand(nz: torch.Tensor, use: bool, convolved: bool) -> torch.Tensor:
        if not convolved:  # the phase reads its shape alone (FF's dY, BP's X, WG's W): a
            # view of one value, not a map of ones (FF's dY at batch 8: MBs a chunk)
            return torch.ones(()).expand(nz.shape)
        return nz.to(torch.float32) if use else torch.ones(nz.shape, dtype=torch.float32)

    x = operand(layer.x_nz, x_nz, phase != BP)
    if not x_nz and phase != BP and layer.x_valid is not None:
        x = layer.x_valid.to(torch.float32)
    w = operand(layer.w_nz, w_nz, phase != WG)
    dy = operand(layer.dy_nz, dy_nz, phase != FF)
    counts = _maps(layer, phase, x, w, dy)
    if phase == WG and mask_wg:
        k, cg, r, s = layer.w_nz.shape
        counts = counts * layer.w_nz.reshape(k, 1, cg, r * s)
    if (reduction_size(layer, phase) >= MAX_EXACT and counts.numel()
            and float(counts.max()) >= MAX_EXACT):
        raise ValueError(f"{layer.name}: a per-output count reaches 2**24; float32 counting "
                         "is no longer exact (split the batch)")
    # in place: `_maps` made `counts` for this call alone, and a new float map (ResNet-18
    # 224's first at batch 8: 25 MB) took longer to allocate than to round. Made contiguous
    # by the cast, which copies anyway: FF's and BP's maps are permuted views, which the
    # tiler's reshapes would otherwise copy again for every tile shape.
    return counts.round_().to(torch.int32, memory_format=torch.contiguous_format)


# Maps from this many elements on are summed by `exact_sum`'s int32 route even when no bound
# on their values is known; on smaller ones the extra pass for the largest value costs about
# what the route saves.
LARGE_MAP = 2**20


def exact_sum(counts: torch.Tensor, dim: int | tuple[int, ...], keepdim: bool = False,
              largest: int | None = None) -> torch.Tensor:
    """`counts.sum(dim)` as int64, for an int32 count map (non-negative) or a bool map,
    exact and faster: torch adds int32 vectorized, but accumulates int32 or bool into int64
    slowly (up to twice as long on the maps here), and far slower past a few million elements
    (ResNet-18 ImageNet's first map at batch 8, 6.4M counts: 23 ms, against 1 in int32).
    So a map is summed in int32 when no sum can reach 2**31 (its terms times the largest
    value), then widened. The largest value is 1 in a bool map, `largest` where the caller
    knows a bound (a phase's reduction size bounds its counts), else found by a pass over a
    large map; a small map without a bound is summed in int64."""
    if counts.dtype in (torch.bool, torch.int32):
        if counts.dtype == torch.bool:
            largest = 1
        elif largest is None and counts.numel() >= LARGE_MAP:
            largest = int(counts.amax())
        terms = math.prod(counts.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
        if largest is not None and terms * largest < 2**31:
            return counts.sum(dim, keepdim=keepdim, dtype=torch.int32).to(torch.int64)
    return counts.sum(dim, keepdim=keepdim, dtype=torch.int64)


def count_total(counts: torch.Tensor) -> int:
    """A count map's sum, exact: numpy accumulates an int32 map in int64 at a fraction of
    torch's cost (torch casts it element by element)."""
    return int(counts.numpy().sum(dtype=np.int64))


def reduction_size(layer: LayerCapture, phase: int) -> int:
    """The most pairs one output of the phase can count: its whole reduction (FF: C/g x R x
    S, BP: K/g x R x S, WG: N x P x Q); below 2**24 no count needs checking."""
    n, p, q = layer.dy_nz.shape[0], *layer.dy_nz.shape[2:]
    k, cg, r, s = layer.w_nz.shape
    return (cg * r * s, k // layer.groups * r * s, n * p * q)[phase]


def nominal_map(layer: LayerCapture, phase: int, rows: bool = False) -> torch.Tensor:
    """Pairs in bounds per output. With every operand all ones, an output's count is its
    share of the reduction (FF: C/g channels, BP: K/g, WG: N images) times the in-bounds
    kernel-window positions, which depend on geometry alone: so one channel of one image is
    counted and the rest is broadcast (a full count would convolve every channel).
    `rows`: its row totals instead (A, I, R, 1), int64 (`exact_sum` over L), summed before
    the broadcast, for a caller that reads no more (the map itself where rows are of one
    output)."""
    if layer.x_valid is not None:  # a row slice: which inputs are padding varies per image
        counts = count_map(layer, phase, x_nz=False, w_nz=False, dy_nz=False)
        return exact_sum(counts, 3, keepdim=True) if rows and counts.shape[3] > 1 else counts
    n, c, h, w_ = layer.x_nz.shape
    k, cg, r, s = layer.w_nz.shape
    p, q = layer.dy_nz.shape[2:]
    share = (cg, k // layer.groups, n)[phase]
    counts = _in_bounds(phase, h, w_, r, s, p, q, layer.stride, layer.padding,
                        layer.dilation) * share
    if counts.numel() and int(counts.max()) >= MAX_EXACT:
        raise ValueError(f"{layer.name}: a per-output count reaches 2**24; float32 counting "
                         "is no longer exact (split the batch)")
    full = ((k, n, p, q), (c, n, h, w_), (k, 1, cg, r * s))[phase]
    if rows and full[3] > 1:
        return exact_sum(counts, 3, keepdim=True).expand(*full[:3], 1).contiguous()
    return counts.expand(full).contiguous()


@lru_cache(maxsize=1024)
def _in_bounds(phase: int, h: int, w: int, r: int, s: int, p: int, q: int, stride: int,
               padding: int, dilation: int) -> torch.Tensor:
    """One channel of one image's in-bounds kernel-window positions per output of the
    phase (int32; shared, never written): every chunk of a layer's reduction, and every
    layer of the same geometry, has the same (`nominal_map` had convolved them again)."""
    one = _convolved(phase, torch.ones(1, 1, h, w), torch.ones(1, 1, r, s),
                     torch.ones(1, 1, p, q), stride, padding, dilation, 1)
    return one.round().to(torch.int32)


def effectual_operands(phase: int, pruned_grads_unused: bool) -> dict[str, bool]:
    """The non-zero maps an effectual count uses: every operand of the phase (FF: X, W; BP:
    W, dY; WG: X, dY, and the weight kept when the algorithm never uses pruned weights'
    gradients)."""
    return {"x_nz": phase != BP, "w_nz": phase != WG, "dy_nz": phase != FF,
            "mask_wg": pruned_grads_unused}


def processed_operands(phase: int, policy: SkipPolicy, pruned_grads_unused: bool
                       ) -> dict[str, bool]:
    """The non-zero maps hardware with `policy` skips on (it never skips a MAC the
    algorithm needs)."""
    return {"x_nz": policy.skips_activations(phase), "w_nz": policy.weights and phase != WG,
            "dy_nz": policy.skips_gradients(phase),
            "mask_wg": policy.pruned_weight_gradients and pruned_grads_unused}


def effectual_map(layer: LayerCapture, phase: int, *, pruned_grads_unused: bool) -> torch.Tensor:
    """Pairs with every operand of the phase non-zero (`effectual_operands`)."""
    return count_map(layer, phase, **effectual_operands(phase, pruned_grads_unused))


def processed_map(layer: LayerCapture, phase: int, policy: SkipPolicy, *,
                  pruned_grads_unused: bool) -> torch.Tensor:
    """What hardware with `policy` performs (`processed_operands`)."""
    if policy.dense:
        return nominal_map(layer, phase)
    return count_map(layer, phase, **processed_operands(phase, policy, pruned_grads_unused))
