"""Spike trains from a real trained network, and split-time temporal coding (STT).

Paper (abstract in shared/seeds/002; title not given there): spikes over T time points are
grouped into time windows (TWs) of w points; Split-Time Temporal coding (STT) keeps at most one
spike per neuron and TW; Integration Through Time (ITT) integrates all TWs of a layer in
parallel on a systolic array. 97x latency and 78x energy over a conventional SNN baseline.

What this module does, with torch ops over whole tensors (time, batch, neurons):

- **ANN-to-SNN conversion** of a ReLU MLP (LeNet-300-100) by data-based weight normalization
  (P. U. Diehl et al., IJCNN 2015; B. Rueckauer et al., Front. Neurosci. 2017): layer l's
  weights are scaled by lambda_{l-1} / lambda_l and its bias by 1 / lambda_l, lambda_l being a
  high percentile (99.9 by default) of layer l's ReLU outputs on training images; neurons are
  integrate-and-fire with threshold 1 and reset by subtraction, at most one spike per step;
  the output layer integrates without firing and the class is its largest potential.
- **Rate coding** of the input: pixel p in [0, 1] spikes with probability p at every step
  (Bernoulli, seeded).
- **STT**: `stt_encode` keeps the first spike of every TW of a spike train and drops the rest
  (so a train with at most one spike per TW is unchanged); `tw_spikes` is the same train seen
  one TW at a time, a binary vector per TW.
- **The STT network**: every layer runs on the TW grid, one integration step per TW, with the
  STT-encoded input; each neuron fires at most once per TW (the IF neuron above, stepped per
  TW). This is what ITT computes: a TW's integration is one matrix product, independent of the
  other TWs; only the threshold-and-reset runs TW after TW. Simplification (stated): the
  position of a spike inside its TW is dropped, a neuron's rate resolution goes from T to
  T / w levels, and an input pixel's rate per TW becomes 1 - (1 - p)^w: these are where STT's
  accuracy change comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def rate_encode(x: torch.Tensor, steps: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Bernoulli spikes, shape (steps, *x.shape): x in [0, 1] is the rate per step."""
    p = x.clamp(0, 1).unsqueeze(0).expand(steps, *x.shape)
    return torch.rand(p.shape, generator=generator) < p


def _windows(spikes: torch.Tensor, window: int) -> torch.Tensor:
    t = spikes.shape[0]
    if window < 1 or t % window:
        raise ValueError(f"{t} time steps do not split into windows of {window}")
    return spikes.reshape(t // window, window, *spikes.shape[1:])


def stt_encode(spikes: torch.Tensor, window: int) -> torch.Tensor:
    """Split-time temporal coding: at most one spike per TW of `window` steps, the TW's first;
    shape and time grid unchanged (time is dimension 0)."""
    w = _windows(spikes.bool(), window)
    first = w & (torch.cumsum(w.to(torch.int32), dim=1) == 1)
    return first.reshape(spikes.shape)


def tw_spikes(spikes: torch.Tensor, window: int) -> torch.Tensor:
    """The STT train one TW at a time: (T / window, ...) bool, a spike where the TW has one."""
    return _windows(spikes.bool(), window).any(dim=1)


@dataclass
class SnnLayer:
    weight: torch.Tensor      # (K, C), normalized
    bias: torch.Tensor        # (K,), normalized, added every integration step
    spiking: bool             # False for the output layer (integrates only)


def convert(model: nn.Sequential, x_calib: torch.Tensor, percentile: float = 99.9
            ) -> list[SnnLayer]:
    """Data-normalized IF network from a Sequential of Linear and ReLU layers."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    if not linears or any(not isinstance(m, nn.Linear | nn.ReLU) for m in model):
        raise ValueError("convert() takes a Sequential of Linear and ReLU layers (an MLP)")
    layers: list[SnnLayer] = []
    prev = 1.0                                  # inputs are rates in [0, 1]
    a = x_calib
    with torch.no_grad():
        for i, lin in enumerate(linears):
            a = torch.relu(lin(a)) if i < len(linears) - 1 else lin(a)
            last = i == len(linears) - 1
            lam = 1.0 if last else float(torch.quantile(a.flatten().float(),
                                                        percentile / 100).clamp_min(1e-6))
            layers.append(SnnLayer(lin.weight * prev / lam, lin.bias / lam
                                   if lin.bias is not None else torch.zeros(lin.out_features),
                                   not last))
            prev = lam
    return layers


@dataclass
class SnnRun:
    potentials: torch.Tensor          # (N, classes): the output layer's integrated potential
    spikes: list[torch.Tensor]        # per layer, its input spikes (steps, N, C) bool

    def predictions(self) -> torch.Tensor:
        return self.potentials.argmax(1)


@torch.no_grad()
def run(layers: list[SnnLayer], in_spikes: torch.Tensor) -> SnnRun:
    """Integrate-and-fire over the steps of `in_spikes` (steps, N, C): per step, layer by
    layer, V += W s + b, spike where V >= 1, V -= 1 there. Returns the output potentials and
    every layer's input spikes (what its hardware reads)."""
    steps, n = in_spikes.shape[:2]
    v = [torch.zeros(n, lay.weight.shape[0]) for lay in layers]
    seen: list[list[torch.Tensor]] = [[] for _ in layers]
    out = torch.zeros(n, layers[-1].weight.shape[0])
    for t in range(steps):
        s = in_spikes[t]
        for i, lay in enumerate(layers):
            seen[i].append(s)
            current = s.to(lay.weight.dtype) @ lay.weight.T + lay.bias
            if not lay.spiking:
                out += current
                break
            v[i] += current
            s = v[i] >= 1.0
            v[i] -= s.to(v[i].dtype)
    return SnnRun(out, [torch.stack(x) for x in seen])


def row_fold_spikes(spikes: torch.Tensor, rows: int) -> torch.Tensor:
    """Mean over the batch of the spikes each group of `rows` inputs receives per step:
    (steps, N, C) -> (steps, ceil(C / rows)) float, what a systolic row fold reads."""
    steps, n, c = spikes.shape
    folds = -(-c // rows)
    padded = torch.nn.functional.pad(spikes.to(torch.float64), (0, folds * rows - c))
    return padded.reshape(steps, n, folds, rows).sum(-1).mean(1)
