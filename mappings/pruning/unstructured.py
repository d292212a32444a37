"""Unstructured (element-wise) magnitude pruning."""

from __future__ import annotations

from torch import Tensor

from mappings.pruning._util import keep_top, pruned_count


def magnitude(weight: Tensor, sparsity: float) -> Tensor:
    """Magnitude pruning (Han et al., "Learning both Weights and Connections", NeurIPS 2015).

    Prunes exactly round(sparsity * weight.numel()) weights, those of smallest |w|
    (ties: lower flat index pruned first). Works on a tensor of any shape.
    """
    n = pruned_count(sparsity, weight.numel())
    return keep_top(weight.detach().abs().flatten(), n).view(weight.shape)
