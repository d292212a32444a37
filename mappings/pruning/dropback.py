"""DropBack (Golub, Lemieux, Lis, "DropBack: Continuous Pruning During Training",
arXiv:1806.06949, 2018), the training-time pruning that Procrustes (Yang et al., MICRO 2020)
accelerates.

Only k weights are "tracked" (trained); every other weight is held at its initial value, which
the hardware never stores: it regenerates it from the PRNG seed that produced the
initialisation. Tracked weights are the k that have moved farthest from their initial value,
|w - w0| after each optimizer step: the paper's "highest total gradients" (for SGD, w - w0 is
the learning rate times the sum of the updates, signed, so gradients that cancel out do not
count), as its authors' code ranks them (compstruct/DropBack, `DropBack.update`) and as
Golub's thesis says: DropBack "identifies the weights that have changed the most". An
untracked weight is reset to w0 after each step, so it enters the top k only if one step
moves it beyond a tracked weight's total. (desim had summed lr * |grad| instead, which
ranked weights whose gradients cancel among the most changed.) Biases are trained dense,
outside k (the authors' code counts them in k; a stated difference).

Procrustes' adaptation (Yang et al., MICRO 2020; its authors' code, compstruct/
procrustes-ml-models, utils/dropback_qe.py): the initial values decay, `init_decay` a step
after the first (0.9 in their runs), so the untracked weights tend to zero and sparse
hardware can skip them. Weights are then scored by |w - d w0|, d the decayed factor, and an
untracked weight is reset to d w0. `init_decay` 1 is DropBack proper.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch
from torch import Tensor

from desim.errors import ConfigError
from mappings.pruning._util import keep_top


def regenerate(name: str, shape: tuple[int, ...] | torch.Size, seed: int) -> Tensor:
    """Deterministic initial values of tensor `name` from `seed`.

    A torch.Generator seeded with (seed, crc32(name)) draws U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (PyTorch's default Linear/Conv init bound), fan_in = prod(shape[1:]) (shape[0] for 1-D).
    The same (name, shape, seed) always gives the same float32 tensor, on the CPU.
    """
    shape = tuple(shape)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else (shape[0] if shape else 1)
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


class DropBack:
    """Keep exactly `k` tracked weights over all given tensors; reset the rest to their init.

    `DropBack(params, k)` clones `params` as the initial values. `DropBack(params, k, seed=s)`
    instead writes `regenerate(name, shape, s)` into `params` in place and keeps only the
    seed, as the hardware does. After each optimizer step, `apply(params)` scores every
    weight by |w - d w0|, keeps the k highest-scoring weights (ties: higher flat index, in the
    order of `params`, wins) and resets every other weight to d w0: d = 1 in DropBack proper,
    `init_decay` to the power of the steps after the first in Procrustes' adaptation.
    """

    def __init__(self, model_params: Mapping[str, Tensor], k: int, seed: int | None = None,
                 init_decay: float = 1.0):
        if k < 0:
            raise ConfigError(f"DropBack k must be >= 0, got {k}", key="k")
        self.k = k
        self.init_decay = init_decay
        self.rate = 1.0  # d: the factor on the initial values, init_decay a step after the first
        self.steps = 0  # optimizer steps applied so far
        self.shapes = {name: tuple(p.shape) for name, p in model_params.items()}
        if seed is not None:
            with torch.no_grad():
                for name, p in model_params.items():
                    p.copy_(regenerate(name, p.shape, seed))
        # The simulator keeps w0 to compare against; the hardware regenerates it (`initial`).
        self._initial = {name: p.detach().clone() for name, p in model_params.items()}
        # Before any step, the tracked weights are the k of largest |w0|, as the one-shot's
        # (`prune_model`): all-zero scores had left them to the ties (the last k in order)
        self.scores = {name: p.abs().to(torch.float64) for name, p in self._initial.items()}

    def initial(self, name: str) -> Tensor:
        """The initial value of tensor `name` (as stored, or as regenerated from the seed)."""
        return self._initial[name]

    def masks(self) -> dict[str, Tensor]:
        """Bool masks, True = tracked: the top-k scores over all tensors."""
        names = list(self.scores)
        flat = torch.cat([self.scores[n].flatten() for n in names])
        keep = keep_top(flat, max(flat.numel() - self.k, 0))
        sizes = [self.scores[n].numel() for n in names]
        return {
            n: part.view(self.shapes[n])
            for n, part in zip(names, torch.split(keep, sizes), strict=True)
        }

    def apply(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """After an optimizer step: decay the initial values' factor d (but after the first
        step), score each weight of `params` by |w - d w0|, keep the top k, reset the others
        to d w0 in place; return the masks."""
        if self.steps:
            self.rate *= self.init_decay
        self.steps += 1
        with torch.no_grad():
            for name, p in params.items():
                start = self._initial[name].to(p.device, torch.float64) * self.rate
                self.scores[name] = (p.detach().to(torch.float64) - start).abs()
            masks = self.masks()
            for name, mask in masks.items():
                p = params[name]
                start = (self._initial[name] * self.rate).to(p.device, p.dtype)
                p.copy_(torch.where(mask, p, start))
        return masks
