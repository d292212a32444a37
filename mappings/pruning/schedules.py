"""Sparsity schedules and dynamic masks: gradual pruning, SET, RigL, Trainer-style dynamic."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from desim.errors import ConfigError
from mappings.pruning._util import check_sparsity, keep_top
from mappings.pruning.unstructured import magnitude


def cubic_sparsity(
    step: int, initial: float, final: float, start_step: int, end_step: int
) -> float:
    """Gradual pruning schedule (Zhu & Gupta, "To prune, or not to prune", 2017).

    s(t) = final + (initial - final) * (1 - (t - start_step) / (end_step - start_step))^3 for
    start_step <= t <= end_step; `initial` before, `final` after.
    """
    check_sparsity(initial)
    check_sparsity(final)
    if end_step <= start_step:
        raise ConfigError(f"end_step ({end_step}) must be after start_step ({start_step})")
    progress = min(max((step - start_step) / (end_step - start_step), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def _drop_and_grow(weight: Tensor, mask: Tensor, fraction: float, grow_score: Tensor) -> Tensor:
    """Drop round(fraction * kept) smallest-|w| kept weights; grow as many of the previously
    pruned positions with the highest `grow_score`. The kept count is unchanged."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"regrow fraction must be in [0, 1], got {fraction}")
    mask = mask.bool()
    kept = int(mask.sum())
    n = min(int(round(fraction * kept)), mask.numel() - kept)
    flat_mask = mask.flatten()
    drop_score = weight.detach().abs().flatten().masked_fill(~flat_mask, -math.inf)
    survivors = keep_top(drop_score, mask.numel() - kept + n)
    grow_score = grow_score.flatten().to(torch.float64).masked_fill(flat_mask, -math.inf)
    grown = keep_top(grow_score, mask.numel() - n)
    return (survivors | grown).view(mask.shape)


def set_regrow(weight: Tensor, mask: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018).

    Drops round(fraction * kept) kept weights of smallest |w| and regrows as many at positions
    pruned before this call, chosen uniformly at random with `generator`. The regrown weights
    are whatever `weight` holds there (zero if it was masked). Returns the new mask.
    """
    noise = torch.rand(mask.shape, generator=generator, device=generator.device)
    return _drop_and_grow(weight, mask, fraction, noise.to(mask.device))


def rigl_regrow(weight: Tensor, grad: Tensor, mask: Tensor, fraction: float) -> Tensor:
    """RigL (Evci et al., "Rigging the Lottery", ICML 2020).

    Drops round(fraction * kept) kept weights of smallest |w| and regrows as many of the
    positions pruned before this call with the largest |grad| (ties: higher index first).
    Returns the new mask; the kept count is unchanged.
    """
    return _drop_and_grow(weight, mask, fraction, grad.detach().abs())


def dynamic_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Per-iteration dynamic pruning as in Trainer (an edge training processor with dynamic
    weight pruning): the mask is recomputed from the current magnitudes every iteration.

    This is magnitude pruning applied to the current dense weights; the caller keeps the dense
    weights and uses weight * mask for that iteration's FF/BP/WG. Only the unpruned weights
    are updated (Trainer's WG "only with unpruned weights"); a pruned weight keeps its value
    and comes back when kept weights shrink below it.
    """
    return magnitude(weight, sparsity)
