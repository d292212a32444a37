"""Config-driven front: a `PruningSpec` and `prune_model`, which prunes a model in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from desim.errors import ConfigError
from mappings.pruning._util import keep_top, pruned_count
from mappings.pruning.compression import (
    block_circulant,
    check_block_circulant,
    check_permuted_diagonal,
    permuted_diagonal,
    ternarize,
)
from mappings.pruning.schedules import dynamic_prune
from mappings.pruning.structured import (
    block_prune,
    channel_prune,
    check_block,
    check_n_m,
    check_pe_wise,
    filter_prune,
    hybrid_prune,
    line_prune,
    n_m,
    pe_wise_prune,
)
from mappings.pruning.unstructured import magnitude
from mappings.specs import PruningSpec


def prunable_layers(model: nn.Module, spec: PruningSpec) -> list[tuple[str, nn.Module]]:
    """The nn.Conv2d and nn.Linear modules `spec` prunes, in `named_modules()` order.

    The first Conv2d and the last Linear in that (registration) order are left out when
    `skip_first_conv` / `skip_last_linear` are set.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    skip: set[str] = set()
    convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in layers if isinstance(m, nn.Linear)]
    if spec.skip_first_conv and convs:
        skip.add(convs[0])
    if spec.skip_last_linear and linears:
        skip.add(linears[-1])
    return [(n, m) for n, m in layers if n not in skip]


# What a method needs of a layer's weight shape, checked by the method itself too.
SHAPE_CHECKS: dict[str, Callable[[Sequence[int], PruningSpec], None]] = {
    "n_m": lambda shape, spec: check_n_m(shape, spec.n, spec.m),  # type: ignore[arg-type]
    "block": lambda shape, spec: check_block(shape, spec.block),  # type: ignore[arg-type]
    "pe_wise": lambda shape, spec: check_pe_wise(shape, spec.pe_rows, spec.pe_cols),  # type: ignore[arg-type]
    "permuted_diagonal": lambda shape, spec: check_permuted_diagonal(shape, spec.p),  # type: ignore[arg-type]
    "block_circulant": lambda shape, spec: check_block_circulant(shape, spec.b),  # type: ignore[arg-type]
}


def _units(shape: Sequence[int], spec: PruningSpec) -> tuple[int, str] | None:
    """(units, what they are) of a layer of `shape` that `spec`'s method prunes
    round(sparsity * units) of (its shape checks passed); None for a method without them."""
    k, c, r, s = (*shape, 1, 1)[:4]
    match spec.method:
        case "magnitude" | "dynamic" | "set" | "rigl":
            return k * c * r * s, "weights"
        case "filter":
            return k, "filters"
        case "channel":
            return c, "input channels"
        case "line" | "hybrid":
            return k * c * r, "lines"
        case "block":
            return (k // spec.block[0]) * (c // spec.block[1]), "blocks"  # type: ignore[index]
        case "pe_wise":
            return (k // spec.pe_rows) * (c * r * s // spec.pe_cols), "groups of a PE row"  # type: ignore[operator]
    return None


def _check_not_emptied(shape: Sequence[int], spec: PruningSpec) -> None:
    """A sparsity that rounds to every unit of a layer (a 10-filter layer at 0.96) leaves it
    no weight: a network cut in two, not a pruning to simulate."""
    if spec.method == "n_m" and spec.n == 0:
        raise ConfigError(f"n = 0 keeps none of each group of m = {spec.m}: no weight left",
                          key="n")
    units = _units(shape, spec)
    if units is not None and pruned_count(spec.sparsity, units[0]) >= units[0]:
        raise ConfigError(f"sparsity {spec.sparsity:g} prunes all {units[0]} {units[1]}: no "
                          "weight left", key="sparsity")


def check_layers(model: nn.Module, spec: PruningSpec) -> None:
    """Every layer `spec` prunes has the shape its method needs (PermDNN's p dividing K and
    C*R*S, ...) and keeps a weight at its sparsity, else a ConfigError naming the layer,
    keyed by the method's parameter (`p`). A shape is all it reads, so `desim.elaborate`
    runs it on the untrained model (on the meta device) before any capture or training, as
    `prune_model` does before pruning."""
    check = SHAPE_CHECKS.get(spec.method)
    layers = prunable_layers(model, spec)
    if spec.method != "dense" and not layers:  # the run passed for a pruned one:
        # "magnitude 0.9" beside 0% sparse weights, and a speedup
        raise ConfigError(f"{spec.method} prunes no layer of the model: its only conv and "
                          "linear layers are those skip_first_conv and skip_last_linear leave "
                          "dense; set them false to prune those", key="skip_first_conv")
    if spec.method == "dropback":  # one k over all its layers' weights
        dropback_k(spec, sum(m.weight.numel() for _, m in layers))
    for name, module in layers:
        shape = tuple(module.weight.shape)
        try:
            if check is not None:
                check(shape, spec)
            _check_not_emptied(shape, spec)
        except ConfigError as err:
            raise ConfigError(f"layer {name!r} ({type(module).__name__}, weight "
                              f"{list(shape)}): {err.message}", key=err.key) from None


def _layer_mask(weight: Tensor, spec: PruningSpec) -> tuple[Tensor, Tensor | None]:
    """(mask, replacement weight or None) for one layer."""
    s = spec.sparsity
    match spec.method:
        case "magnitude" | "set" | "rigl":  # SET and RigL start from magnitude masks
            return magnitude(weight, s), None
        case "dynamic":
            return dynamic_prune(weight, s), None
        case "n_m":
            return n_m(weight, spec.n, spec.m), None  # type: ignore[arg-type]
        case "filter":
            return filter_prune(weight, s), None
        case "channel":
            return channel_prune(weight, s), None
        case "line":
            return line_prune(weight, s), None
        case "hybrid":
            return hybrid_prune(weight, s, spec.channel_share), None
        case "block":
            return block_prune(weight, s, spec.block), None  # type: ignore[arg-type]
        case "pe_wise":
            return pe_wise_prune(weight, s, spec.pe_rows, spec.pe_cols), None  # type: ignore[arg-type]
        case "permuted_diagonal":
            return permuted_diagonal(weight, spec.p, spec.seed), None  # type: ignore[arg-type]
        case "block_circulant":
            projected = block_circulant(weight, spec.b)  # type: ignore[arg-type]
            return projected != 0, projected
        case "ternarize":
            ternary, scale = ternarize(weight, spec.threshold_ratio)
            return ternary != 0, scale * ternary.to(weight.dtype)
    raise AssertionError(spec.method)  # pragma: no cover


def dropback_k(spec: PruningSpec, total: int) -> int:
    """Weights DropBack tracks of the `total` it ranks: `k` when given, else (1 - sparsity)
    of them. More than `total` (they were clipped to it) or none is bad input: its
    compression would be reported for a k that never ran."""
    if spec.k is not None:
        if spec.k > total:
            raise ConfigError(f"k = {spec.k:,} is more weights than DropBack ranks: the "
                              f"layers it prunes have {total:,}", key="k")
        return spec.k
    k = round((1 - spec.sparsity) * total)
    if k == 0:
        raise ConfigError(f"sparsity {spec.sparsity} tracks none of the {total:,} weights "
                          "DropBack ranks: no weight left to train", key="sparsity")
    return k


def prune_model(model: nn.Module, spec: PruningSpec) -> dict[str, Tensor]:
    """Prune `model`'s Conv2d and Linear weights in place; return {module name: bool mask}.

    Skipped layers (see `prunable_layers`) are omitted from the result and left untouched;
    "dense" returns {}. Weights are multiplied by their mask, except that "ternarize" replaces
    a weight by scale * ternary and "block_circulant" by its projection (mask = non-zeros).
    "dropback" has no training history here, so it keeps the k weights of largest |w| over all
    pruned layers together (use `DropBack` during training); the untracked ones are zeroed
    with `init_decay` < 1 (Procrustes: the limit their decayed initial values reach) and
    keep their values with 1 (DropBack proper: its hardware regenerates and computes them).
    With `ternary`, the kept weights are then ternarized (`ternarize_kept`); the mask stays
    the method's. Biases are not touched.
    """
    if spec.method == "dense":
        return {}
    check_layers(model, spec)
    layers = prunable_layers(model, spec)
    masks: dict[str, Tensor] = {}
    with torch.no_grad():
        if spec.method == "dropback":
            flat = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
            k = dropback_k(spec, flat.numel())
            keep = keep_top(flat, flat.numel() - k)
            parts = torch.split(keep, [m.weight.numel() for _, m in layers])
            for (name, module), part in zip(layers, parts, strict=True):
                masks[name] = part.view(module.weight.shape)
                if spec.init_decay < 1:
                    module.weight.mul_(masks[name])
            return masks
        for name, module in layers:
            mask, replacement = _layer_mask(module.weight, spec)
            if replacement is None:
                module.weight.mul_(mask)
            else:
                module.weight.copy_(replacement)
            if spec.ternary:
                module.weight.copy_(ternarize_kept(module.weight, mask, spec.threshold_ratio))
            masks[name] = mask
    _refuse_emptied(layers, spec)
    return masks


def _refuse_emptied(layers: list[tuple[str, nn.Module]], spec: PruningSpec) -> None:
    """A layer the pruning left without a non-zero weight is bad input, not a network to
    simulate: its outputs are constant, and the speedup of skipping all its work is none
    a design can claim (ternarize at threshold_ratio 100 gave 23x). Values decide it for
    ternarization (the threshold against the layer's mean |w|), so it is checked on the
    pruned weights. Not for DropBack: its top-k over all layers at once does leave layers
    none (procrustes_vs_dense.yaml: ResNet-18's 512-channel convs, whose initial |w| are
    the smallest), an open question of how to model Procrustes, not a user's typo."""
    for name, module in layers:
        if not bool(module.weight.any()):
            key = "threshold_ratio" if spec.method == "ternarize" or spec.ternary else "sparsity"
            method = spec.method + (" + ternary" if spec.ternary else "")
            raise ConfigError(f"layer {name!r} ({type(module).__name__}, weight "
                              f"{list(module.weight.shape)}): {method} leaves it no "
                              f"non-zero weight ({key} {getattr(spec, key):g})", key=key)


def ternarize_kept(weight: Tensor, mask: Tensor, threshold_ratio: float = 0.7) -> Tensor:
    """`weight` with its kept entries (mask True) replaced by alpha * t, t in {-1, 0, +1}, the
    TWN ternarization (`ternarize`) of the kept entries alone; pruned entries stay 0. Kept
    weights below the threshold become 0 too: ternary zeros, stored as a 2-bit code like the
    others, unlike the pruned groups."""
    kept = weight[mask]
    out = torch.zeros_like(weight)
    if kept.numel():
        ternary, scale = ternarize(kept, threshold_ratio)
        out[mask] = scale * ternary.to(weight.dtype)
    return out
