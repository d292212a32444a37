"""Pruning library: mask producers for the sparse training accelerators desim models.

A weight is a torch tensor shaped like an nn.Conv2d weight (K, C, R, S) or an nn.Linear weight
(K, C) (treated as (K, C, 1, 1)). A mask is a bool tensor of the weight's shape, True = kept.
Every method prunes exactly round(sparsity * units) units at its own granularity; ties in the
ranking go by index (stable sort, lower index pruned first), so results are deterministic.
"""

from mappings.pruning._util import keep_top, pruned_count
from mappings.pruning.compression import (
    block_circulant,
    is_block_circulant,
    permuted_diagonal,
    ternarize,
)
from mappings.pruning.dropback import DropBack, regenerate
from mappings.pruning.schedules import cubic_sparsity, dynamic_prune, rigl_regrow, set_regrow
from mappings.pruning.spec import check_layers, dropback_k, prunable_layers, prune_model
from mappings.pruning.structured import (
    block_prune,
    channel_prune,
    filter_prune,
    hybrid_channel_count,
    hybrid_prune,
    line_prune,
    n_m,
    pe_wise_prune,
)
from mappings.pruning.unstructured import magnitude
from mappings.specs import Method, PruningSpec

__all__ = [
    "DropBack",
    "Method",
    "PruningSpec",
    "block_circulant",
    "block_prune",
    "channel_prune",
    "check_layers",
    "cubic_sparsity",
    "dropback_k",
    "dynamic_prune",
    "filter_prune",
    "hybrid_channel_count",
    "hybrid_prune",
    "is_block_circulant",
    "keep_top",
    "line_prune",
    "magnitude",
    "n_m",
    "pe_wise_prune",
    "permuted_diagonal",
    "prunable_layers",
    "prune_model",
    "pruned_count",
    "regenerate",
    "rigl_regrow",
    "set_regrow",
    "ternarize",
]
