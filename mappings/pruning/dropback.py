"""DropBack (Golub, Lemieux, Lis, "DropBack: Continuous Pruning During Training",
arXiv:1806.06949, 2018), the training-time pruning that Procrustes (Yang et al., MICRO 2020)
accelerates.

Only k weights are "tracked" (trained); every other weight is held at its initial value, which
the hardware never stores: it regenerates it from the PRNG seed that produced the
initialisation. Tracked weights are the k with the largest accumulated gradient magnitude.
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
    seed, as the hardware does. Per step: `observe(grads, lr)` adds lr * |grad| to each
    weight's score (the accumulated gradient magnitude), then `apply(params)` after the
    optimizer step keeps the k highest-scoring weights (ties: higher flat index, in the
    order of `params`, wins) and resets every other weight to its initial value.
    """

    def __init__(self, model_params: Mapping[str, Tensor], k: int, seed: int | None = None):
        if k < 0:
            raise ConfigError(f"DropBack k must be >= 0, got {k}", key="k")
        self.k = k
        self.seed = seed
        self.shapes = {name: tuple(p.shape) for name, p in model_params.items()}
        self.scores = {
            name: torch.zeros(p.shape, dtype=torch.float64, device=p.device)
            for name, p in model_params.items()
        }
        self._initial: dict[str, Tensor] | None = None
        if seed is None:
            self._initial = {name: p.detach().clone() for name, p in model_params.items()}
        else:
            with torch.no_grad():
                for name, p in model_params.items():
                    p.copy_(regenerate(name, p.shape, seed))

    def initial(self, name: str) -> Tensor:
        """The initial value of tensor `name` (stored, or regenerated from the seed)."""
        if self._initial is not None:
            return self._initial[name]
        assert self.seed is not None
        return regenerate(name, self.shapes[name], self.seed)

    def observe(self, grads: Mapping[str, Tensor | None], lr: float) -> None:
        """Accumulate lr * |grad| for every tracked-candidate tensor in `grads`."""
        for name, grad in grads.items():
            if name not in self.scores:
                raise ConfigError(f"DropBack got a gradient for unknown tensor {name!r}")
            if grad is not None:
                self.scores[name] += lr * grad.detach().abs().to(torch.float64)

    def masks(self) -> dict[str, Tensor]:
        """Bool masks, True = tracked: the top-k accumulated scores over all tensors."""
        names = list(self.scores)
        flat = torch.cat([self.scores[n].flatten() for n in names])
        keep = keep_top(flat, max(flat.numel() - self.k, 0))
        sizes = [self.scores[n].numel() for n in names]
        return {
            n: part.view(self.shapes[n])
            for n, part in zip(names, torch.split(keep, sizes), strict=True)
        }

    def apply(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Reset untracked weights of `params` to their initial values in place; return masks."""
        masks = self.masks()
        with torch.no_grad():
            for name, mask in masks.items():
                p = params[name]
                p.copy_(torch.where(mask, p, self.initial(name).to(p.device, p.dtype)))
        return masks
