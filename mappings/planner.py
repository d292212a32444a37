"""The mapping plan of one layer-phase: its reduction whole or cut into chunks, the loop order
of the chunks, and the choice among those plans (a small Timeloop-style search).

A tile normally does a layer's whole reduction, so every output is final in its tile
(`mappings.tiling`). When a layer's operands cannot share the buffer, that forces one of
them to be read again and again; cutting the reduction (FF: input channels, BP: output
channels, WG: images, or rows of one image) into chunks run one after the other, chunks
outermost, lets each chunk's operands be read once while the partial sums go back and
forth, kept in the global buffer or spilled to DRAM. Chunks innermost instead keep a
tile's partial sums in its PEs and read both operands anew for every tile. A design whose
clusters may be dealt a reduction (`mapping.partition: reduction`) has one more plan: the
reduction cut into a slice a cluster, the slices side by side, their partial sums added at
the global buffer (`ACROSS`). Each phase takes the plan that minimises
`HardwareView.objective` (energy x delay by default) on estimates made from the plan's own
event rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise

import numpy as np
import torch

from desim.errors import ConfigError
from desim.events import DEALT, TILE_DTYPE, apportion, concat_tables, empty_table
from mappings.capture import LayerCapture
from mappings.counting import (
    BP,
    FF,
    WG,
    SkipPolicy,
    count_total,
    effectual_map,
    effectual_operands,
    exact_sum,
    nominal_map,
    processed_map,
    processed_operands,
    reduction_size,
)
from mappings.pipeline import estimated_pj, plan_key, stage_totals
from mappings.scalesim import gemm_view
from mappings.target import HardwareView
from mappings.tiling import (
    BUFFER_KEY,
    TileMisfit,
    TileShape,
    choose_tile,
    circulant_mac_ratio,
    gradient_bytes,
    halvings,
    misfit,
    phase_shape,
    smallest_tile,
    stored_ratios,
    summed_phase_shape,
    tile_bytes,
    tile_part,
    tracked_weights,
    written_ratio,
)


def tile_phase(layer: LayerCapture, layer_index: int, phase: int, hw: HardwareView,
               policy: SkipPolicy, *, pruned_grads_unused: bool, circulant_block: int = 0,
               input_resident: bool = False, counted: dict | None = None
               ) -> tuple[np.ndarray, dict]:
    """The event-table rows of one phase of one layer, and the layer-phase totals (with
    `output_bytes`, what the phase writes as its result, and `tile_buffer_bytes`, the
    buffer its plan's largest tile takes: under a smaller budget that still holds it the
    plan stays valid, and for FF and BP, whose plans do not depend on the budget, best).

    `circulant_block` b > 0: the layer's weights are b x b circulant blocks run by FFT
    (CirCNN, `HardwareView.circulant_fft`): each tile's MACs are scaled by
    `mappings.circulant.fft_mac_ratio` and the weights take b-fold fewer bytes.
    `input_resident`: the input an earlier phase made (FF's X, BP's and WG's dY) is already
    in the global buffer (inter-layer reuse): no tile reads it from DRAM. It is FF's and
    BP's stream operand and WG's channel operand.
    `counted`: a dict the caller keeps for this layer and phase, where the layer as compacted
    (`_compacted`), the reduction plans' count maps (`_prepared_plans`) and the tiler's sums
    of them (`tiling._kept`, keyed by the compacted layer's id) stay between
    calls with another budget or `output_to_dram` (inter-layer reuse), the only fields of
    `hw` its calls vary. FF's and BP's plans depend on neither; WG's chunks depend on the
    budget and on `input_resident` alone through `_wg_split`, so its plans are kept by that.
    """
    where = f"layer {layer.name} {('FF', 'BP', 'WG')[phase]}"
    nominal = int(nominal_map(layer, phase, rows=True).sum()) if hw.systolic is not None else 0
    systolic = nominal > 0
    if systolic:  # every plan's tiles at the array's rate for this layer-phase: its cycles
        # over the MACs its tiles will share them by (nominal: a padding pair is no MAC)
        array_cycles = hw.systolic(*gemm_view(layer, phase))
        hw = replace(hw, systolic_cycles_per_mac=array_cycles / nominal)
    pruned_grads_unused = pruned_grads_unused and layer.weight_is_parameter
    if circulant_block and not layer.weight_is_parameter:
        circulant_block = 0
    kept = {} if counted is None else counted
    if "compacted" not in kept:  # (a re-map under another budget compacts alike)
        kept["compacted"] = _compacted(layer, phase, hw, policy, pruned_grads_unused,
                                       circulant_block)
    layer, before, after = kept["compacted"]
    table, totals = _tile_phase(layer, layer_index, phase, hw, policy, where,
                                pruned_grads_unused, circulant_block, input_resident, kept)
    # The nominal MACs are the whole layer's, what channel compaction leaves out too: every
    # channel of the reduction takes the same pairs (its compacted ones `before / after` of
    # them, exactly), and the totals hold every output channel. The tiles are credited the
    # pairs no tile computes in proportion to their own (they had summed to the compacted
    # layer's alone: a compacted phase's MACs read lower than the same layer's elsewhere).
    full = totals["macs"] * before // after
    if len(table) and int(table["macs"].sum()) != full:
        table = table.copy()
        table["macs"] = apportion(table["macs"], full)
    if systolic and len(table):  # the array's cycles shared out by the tiles' MACs
        table["compute_cycles"] = apportion(table["macs"], array_cycles)
    return table, {**totals, "macs": full}


class StoredOverflow(ConfigError):
    """No tile of a plan fits its half as its formats store it, though one fits at dense
    bytes (`searched`): a finer cut of WG's reduction may."""


def _tile_phase(layer: LayerCapture, layer_index: int, phase: int, hw: HardwareView,
                policy: SkipPolicy, where: str, pruned_grads_unused: bool,
                circulant_block: int, input_resident: bool, kept: dict
                ) -> tuple[np.ndarray, dict]:
    """`tile_phase` of a layer as compacted (`kept`: tile_phase's `counted`). WG's reduction
    is cut into as few chunks as fit at dense bytes (`_wg_split`), or more where its tiles
    as stored do not fit (ResNet-18's first WG at 224 x 224 on hppu_like.yaml, its maps in
    bitmaps: its smallest tile of whole images, 253,344 B dense, overflows a 256 KiB half)."""
    resident = (input_resident and phase != WG, input_resident and phase == WG)
    split = _wg_split(layer, hw, resident[1]) if phase == WG else None
    while True:
        try:
            return _tile_split(layer, layer_index, phase, hw, policy, where,
                               pruned_grads_unused, circulant_block, resident, kept, split)
        except StoredOverflow:
            split = _wg_split(layer, hw, resident[1], finer_than=split) if split else None
            if split is None:
                raise


def _tile_split(layer: LayerCapture, layer_index: int, phase: int, hw: HardwareView,
                policy: SkipPolicy, where: str, pruned_grads_unused: bool,
                circulant_block: int, resident: tuple[bool, bool], kept: dict,
                split: tuple[str, int] | None) -> tuple[np.ndarray, dict]:
    """`_tile_phase` with WG's reduction cut as `split` says (None: FF, BP)."""
    prepared = kept.setdefault("plans", {})
    if split not in prepared:
        prepared[split] = _prepared_plans(
            _reduction_plans(layer, phase, hw, policy, pruned_grads_unused, circulant_block,
                             split), phase, hw, circulant_block)
    totals, channels, plans = prepared[split]
    if len(channels) == 0:  # nothing left to compute in this phase
        if phase == WG:  # but its dW, all zeros, is written still
            return _untiled_gradients_written(
                layer, channels, hw, empty_table(0), dict(totals),
                policy.pruned_weight_gradients and pruned_grads_unused, circulant_block,
                layer_index)
        return empty_table(0), dict(totals)
    # what the tiler derives from each chunk's maps and part (its outputs per row block and
    # PE, ...): it depends on neither the order nor the budget, so orders and re-maps share it
    cache = kept.setdefault("tiling", {})
    if "out_ratio" not in kept:  # the output's bytes as written over dense: every plan's
        kept["out_ratio"] = written_ratio(layer, phase, hw, policy.pruned_weight_gradients
                                          and pruned_grads_unused, circulant_block)
    out_ratio = kept["out_ratio"]
    # a reduction dealt to the clusters: its slices, and once counted their maps and
    # operand statistics (kept, as the plans are, for a re-map under another budget)
    across = kept.setdefault("across", {})
    if split not in across:
        across[split] = [_across_slices(layer, phase, hw, split, circulant_block), None]
    slices = across[split][0]
    best: tuple | None = None
    errors: list[ConfigError] = []   # each plan's whose smallest tile does not fit

    def chosen(tiled: tuple, chunks: int, order: str) -> None:
        """Keep a tiled plan (`_tile_plan`'s) if it ranks best so far."""
        nonlocal best
        table, weight_bytes, out_bytes, need, key, shape = tiled
        if best is None or key < best[0]:
            best = (key, table, {**totals, "weight_dram_bytes": weight_bytes,
                                 "output_bytes": out_bytes, "tile_buffer_bytes": need,
                                 "mapping": mapping_text(shape, chunks, order, phase,
                                                         plans[0][1][0][2].shape)})

    def chunk_plans() -> None:
        """The reduction whole or in chunks run one after the other."""
        for parts, maps, orders, shaped, macs in plans:
            built: dict = {}  # tile_part's rows, shared by the orders that tile alike
            for order in orders:
                # sure to lose: not tiled
                if best is not None and (_ChunkFloor(maps, channels, order, hw, macs).floor()
                                         > best[0][0] * (1 + 1e-9)):  # (float rounding)
                    continue
                try:
                    tiled = _tile_plan(
                        parts, maps, shaped, channels, order, layer_index, phase, hw, policy,
                        where, pruned_grads_unused, circulant_block, built, resident, cache,
                        bound=None if best is None else best[0][0], chunk_macs=macs,
                        out_ratio=out_ratio)
                except ConfigError as err:
                    errors.append(err)
                    continue
                if tiled is not None:  # (None: every tile shape lost part-way through)
                    chosen(tiled, len(parts), order)

    def dealt_across() -> None:
        """The reduction's slices side by side, a cluster each (not counted when its floor
        is above the best plan's: sure to lose)."""
        outputs = len(channels) * int(np.prod(plans[0][1][0][2].shape[1:]))
        if best is not None and (_across_floor(totals, outputs, len(slices), hw)
                                 > best[0][0] * (1 + 1e-9)):
            return
        if across[split][1] is None:
            maps = [_count_maps(part, phase, hw, policy, pruned_grads_unused) for part in slices]
            across[split][1] = ([m if len(channels) == m[2].shape[0] else _channels_of(m, channels)
                                 for m in maps], [phase_shape(part, phase, hw) for part in slices])
        maps, shaped = across[split][1]
        try:
            chosen(_tile_across(layer, slices, maps, shaped, channels, layer_index, phase, hw,
                                policy, where, pruned_grads_unused, resident, cache,
                                out_ratio),
                   len(slices), ACROSS)
        except ConfigError as err:
            errors.append(err)

    if slices and set(hw.partitions) == {"reduction"}:  # dealt so wherever it can be
        dealt_across()
        if best is None:  # its tile does not fit the buffer: by channels, in chunks
            chunk_plans()
    else:  # (where the reduction cannot be dealt, `choose_tile` deals channels instead)
        chunk_plans()
        if slices:
            dealt_across()
    if best is None:  # (a finer cut may fit where a plan overflows as stored); else, of
        # the plans given the whole budget (kept partial sums take part of it), the one
        # whose smallest tile needs least: what the buffer must grow to, as the check says
        whole = [e for e in errors
                 if isinstance(e, TileMisfit) and e.given_bytes == hw.buffer_bytes]
        raise next((e for e in errors if isinstance(e, StoredOverflow)),
                   min(whole, key=lambda e: e.need_bytes) if whole else errors[0])
    _, table, totals = best
    if circulant_block:
        totals["processed_macs"] = int(table["processed_macs"].sum())
    if phase == WG and len(channels) < layer.w_nz.shape[0]:
        table, totals = _untiled_gradients_written(layer, channels, hw, table, totals,
                                                   policy.pruned_weight_gradients
                                                   and pruned_grads_unused, circulant_block,
                                                   layer_index)
    return table, totals


def _untiled_gradients_written(layer: LayerCapture, channels: torch.Tensor, hw: HardwareView,
                               table: np.ndarray, totals: dict, kept_gradients: bool,
                               circulant_block: int, layer_index: int
                               ) -> tuple[np.ndarray, dict]:
    """WG's table and totals with the dW of the output channels channel compaction left
    untiled (no processed work: a dY channel all zeros, or no kept weight meeting a
    non-zero pair) written too: their gradients are zeros, but the update reads dW and
    updates every weight it keeps (`mappings.update`), so dW is written whole, in the form
    WG writes it (`tiling.gradient_bytes`), written back with the tiles that write outputs
    (in proportion to what they write), no PE computing them. Before, WG wrote the tiled
    channels' alone and the update read those bytes as all of dW (HPPU's first conv in an
    audit: 120 bytes of 183). The write-back reads them out of one zeroed burst of the
    buffer, again and again: they take no room in the tiles' halves, nor buffer writes
    (made in the tiles, 466 KB of zeros on HPPU's ResNet-18 at batch 4, the tiles of a
    64 KiB buffer had held up to 1.19x their half). A WG with no tile at all (every dY
    channel zero) writes its dW so from one tile of its own (of layer `layer_index`), that
    does nothing else (it had written none, and the update read none)."""
    missing = torch.as_tensor(np.setdiff1d(np.arange(layer.w_nz.shape[0]), channels.numpy()))
    rest = gradient_bytes(layer, missing, hw, kept_gradients, circulant_block)
    if rest <= 0:
        return table, totals
    if len(table):
        table = table.copy()
    else:
        table = empty_table(1)
        table["layer"], table["phase"] = layer_index, WG
    made = apportion(table["gather_bytes"], rest)
    if hw.output_to_dram:
        table["dram_write_bytes"] += made
    return table, {**totals, "output_bytes": totals["output_bytes"] + rest}


def geometry_misfit(layer: LayerCapture, phase: int, hw: HardwareView,
                    circulant: bool = False) -> ConfigError | None:
    """What `tile_phase` would say if no plan of this layer-phase had a tile that fits the
    buffer, found from the layer's geometry alone (a tile's size does not depend on its
    sparsity), so before the trained model is captured: the smallest tile of the whole
    reduction and of the plan with the finest reduction chunks (FF, BP; their partial sums
    spilled, `output_room`), or of WG's finest chunks (innermost, the partial sums in the
    PEs), under the whole buffer, as the mapper's first pass maps every phase. Channel
    compaction may leave a layer fewer channels than clusters: taken as one channel, so
    that the check never refuses what the mapper would map. `circulant`: the layer runs by
    FFT (its reduction is not split). None when it fits; else the finest plan's error."""
    where = f"layer {layer.name} {('FF', 'BP', 'WG')[phase]}"
    k, cg, r, s = layer.w_nz.shape
    if phase == WG:  # the finest chunks the mapper tries (`_reduction_plans`)
        kind, m = _wg_split(layer, hw)
        finest = (kind, _wg_chunk_sizes(m, layer.dy_nz.shape[0])[-1] if kind == "images"
                  else m)
        plans = [(_widest_wg_part(layer, finest), 0)]
    else:
        c = cg if phase == FF else k
        finest = max(MIN_CHUNK_CHANNELS, -(-c // 8))
        plans = [(layer, 0)]
        if layer.groups == 1 and not circulant and finest < c:
            plans.append((_slice_reduction(layer, phase, 0, finest),
                          output_room(SPILLED, -(-c // finest), hw)))
    a, n_rows, length = {FF: (k, *layer.dy_nz.shape[2:]), BP: layer.x_nz.shape[1:],
                         WG: (k, cg, r * s)}[phase]
    if hw.channel_compaction:
        a = 1
    for part, room in plans:
        ps, win = phase_shape(part, phase, hw)
        _, need = smallest_tile(ps, win, a, n_rows, length, hw, out_elem_bytes=room)
        if need <= hw.buffer_bytes:
            return None
    return misfit(ps, win, a, n_rows, length, hw, where, room)


def _prepared_plans(plans: list[tuple], phase: int, hw: HardwareView, circulant_block: int = 0
                    ) -> tuple[dict, torch.Tensor, list[tuple]]:
    """The phase's totals, the output channels that have work (all of them without
    `hw.channel_compaction`) and each plan with its count maps cut to those channels, its
    chunks' operand statistics and their MACs (`_chunk_macs`): what does not depend on the
    buffer budget, so that a phase mapped again under another one (inter-layer reuse)
    reuses it."""
    # Counts add over a reduction, so every plan has the phase's totals and busy channels:
    # taken from the first plan (the fewest chunks), each map totalled by `count_total`.
    first = plans[0][1]
    totals = {"macs": sum(count_total(m[0]) for m in first),
              "effectual_macs": sum(count_total(m[1]) for m in first),
              "processed_macs": sum(count_total(m[2]) for m in first),
              "weight_dram_bytes": 0, "output_bytes": 0, "tile_buffer_bytes": 0}
    channels = torch.arange(first[0][2].shape[0])
    if hw.channel_compaction:  # drop output channels with no work in any chunk
        channels = channels[sum(exact_sum(m[2] if m[3] is None else m[3], (1, 2, 3))
                                for m in first) > 0]
    if len(channels) == 0:
        return totals, channels, []
    def kept(maps: list[tuple]) -> list[tuple]:  # the kept channels' counts
        if len(channels) == maps[0][2].shape[0]:
            return maps
        return [_channels_of(m, channels) for m in maps]

    # The coarser plans' chunks are runs of the finest plan's: their operand statistics and
    # MACs are sums of those (`summed_phase_shape`), not read again from their maps.
    fine_parts, fine_maps, _ = max(plans, key=lambda plan: len(plan[0]))
    fine_shapes = [phase_shape(part, phase, hw) for part in fine_parts]
    fine_kept = kept(fine_maps)  # (cut once: the finest plan is among `plans` too)
    fine_macs = _chunk_macs(fine_kept, circulant_block)
    prepared = []
    for parts, maps, orders in plans:
        runs = _fine_runs(parts, fine_parts, phase)
        shaped = [summed_phase_shape(part, phase, hw, [fine_shapes[i] for i in run])
                  for part, run in zip(parts, runs, strict=True)]
        prepared.append((parts, fine_kept if maps is fine_maps else kept(maps), orders, shaped,
                         [sum(fine_macs[i] for i in run) for run in runs]))
    return totals, channels, prepared


def _channels_of(maps: tuple, channels: torch.Tensor) -> tuple:
    """A chunk's count maps cut to the output `channels` (`index_select`: advanced indexing
    took half as long again)."""
    return tuple(None if t is None else t.index_select(0, channels) for t in maps)


def _fine_runs(parts: list[LayerCapture], fine: list[LayerCapture], phase: int
               ) -> list[range]:
    """For each chunk of a reduction plan, the run of the finest plan's chunks (`fine`) it is
    made of: every plan cuts the reduction (FF's input channels, BP's output channels, WG's
    images) at boundaries of the finest chunks."""
    def extent(part: LayerCapture) -> int:
        return (part.w_nz.shape[1], part.w_nz.shape[0], part.dy_nz.shape[0])[phase]

    runs, i = [], 0
    for part in parts:
        start, left = i, extent(part)
        while left > 0:
            left -= extent(fine[i])
            i += 1
        if left:
            raise AssertionError("a reduction chunk ends inside one of the finest chunks")
        runs.append(range(start, i))
    return runs


# Where a split reduction's chunks sit in the loop nest.
WHOLE = "whole"      # no split: every output is final in its tile
INNER = "inner"      # chunks innermost: a tile's outputs stay in its PEs from chunk to chunk
KEPT = "kept"        # chunks outermost, partial sums kept in the global buffer between chunks
SPILLED = "spilled"  # chunks outermost, partial sums written to DRAM and read back
ACROSS = "across"    # slices side by side, one a cluster, their partial sums added at the buffer
MIN_CHUNK_CHANNELS = 8  # a narrower reduction chunk saves too little to be worth a plan


def output_room(order: str, chunks: int, hw: HardwareView) -> int:
    """The buffer bytes an output of a tile takes under a plan's `order` (0: its element's
    bytes). Spilled partial sums pass through the buffer with each tile: read back from
    DRAM at the accumulator's precision (every chunk but the first), and gathered back at
    that precision (every chunk but the last, which gathers the final outputs). A
    reduction dealt to the clusters adds each cluster's partial sum into a running sum at
    the accumulator's precision. Kept partial sums have their own room (`_tile_plan`'s
    `psum_share`), and chunks innermost keep theirs in the PEs."""
    eb, psum = hw.element_bytes, hw.psum_bytes
    if order == SPILLED and chunks > 1:
        return psum + (max(psum, eb) if chunks > 2 else eb)
    return max(psum, eb) if order == ACROSS else 0


def _reduction_plans(layer: LayerCapture, phase: int, hw: HardwareView, policy: SkipPolicy,
                     pruned_grads_unused: bool, circulant_block: int,
                     wg_split: tuple[str, int] | None = None) -> list[tuple]:
    """The ways to cut a phase's reduction into chunks: (chunks, their count maps, the loop
    orders to try) for each.

    WG reduces over the batch: into the fewest chunks of images that fit (`_wg_split`), and
    into two, four and eight times as many (runs of rows when one image does not fit): a
    smaller chunk's share of an operand may fit the clusters' local buffers and be sent
    once, or leave room for a tile that reads less (in hppu_vs_dense, at batch 8, chunks of
    one image innermost halve the estimated energy x delay of some of ResNet-18's deep WGs
    on hppu.yaml, where four chunks of two images had been the finest offered). FF
    reduces over input channels and BP over output channels: besides the whole reduction,
    chunks of f, 2f and 4f channels are tried (f: an eighth of them, at least
    `MIN_CHUNK_CHANNELS`), chunks outermost: a layer whose weights dwarf the buffer can then
    keep its whole input on chip while its weights stream past once, instead of re-reading
    one of the two (a Timeloop-style reduction split). Counts add over a reduction, so the
    finest chunks are counted once and the coarser plans sum them. `wg_split`: WG's
    `_wg_split` (default: under the whole budget `hw` gives, dY not resident)."""
    def counted(parts: list[LayerCapture]) -> list[tuple]:
        return [_count_maps(part, phase, hw, policy, pruned_grads_unused) for part in parts]

    if phase == WG:
        kind, m = wg_split or _wg_split(layer, hw)
        n = layer.dy_nz.shape[0]
        if kind == "rows":  # runs of rows: no finer image chunks
            chunks = _wg_parts(layer, (kind, m))
            return [(chunks, counted(chunks), (INNER, KEPT, SPILLED))]
        # m, m/2, m/4, m/8 (each a multiple of the finest): every chunk of every plan keeps
        # count maps the size of dW, so a search down to one image at batch 32 had doubled
        # the run's memory (hppu_vs_dense.yaml at batch 32: 1.45 to 2.84 GB)
        sizes = _wg_chunk_sizes(m, n)
        finest = sizes[-1]
        fine = counted([_slice(layer, i, min(i + finest, n)) for i in range(0, n, finest)])
        grouped: dict = {1: fine}
        plans = []
        for size in sizes:   # the fewest chunks first: they win ties
            parts = [_slice(layer, i, min(i + size, n)) for i in range(0, n, size)]
            maps = (_grouped_maps(grouped, size // finest) if size % finest == 0
                    else counted(parts))  # (the whole batch, an odd `m`: counted alone)
            plans.append((parts, maps, (INNER, KEPT, SPILLED) if len(parts) > 1 else (WHOLE,)))
        return plans
    c = layer.w_nz.shape[1] if phase == FF else layer.w_nz.shape[0]
    finest = max(MIN_CHUNK_CHANNELS, -(-c // 8))
    if layer.groups != 1 or circulant_block or finest >= c:
        return [([layer], counted([layer]), (WHOLE,))]
    fine = counted([_slice_reduction(layer, phase, c0, min(c0 + finest, c))
                    for c0 in range(0, c, finest)])
    grouped: dict = {1: fine}
    whole = _grouped_maps(grouped, 1 << (len(fine) - 1).bit_length())
    plans = [([layer], whole, (WHOLE,))]   # the whole reduction first: it wins ties
    for group in (4, 2, 1):   # 2, 4, 8 chunks
        if group >= len(fine):
            continue
        size = finest * group
        parts = [_slice_reduction(layer, phase, c0, min(c0 + size, c)) for c0 in range(0, c, size)]
        plans.append((parts, _grouped_maps(grouped, group), (KEPT, SPILLED)))
    return plans


def _wg_chunk_sizes(images: int, batch: int) -> list[int]:
    """The images a chunk of WG's plans holds: `_wg_split`'s `images`, then its halvings
    down to an eighth of it, each a multiple of the finest, which every chunk's bounds must
    be (`_fine_runs`). `images` itself is offered where it is one or where it is the whole
    batch (17 at batch 17: 17, 8, 4, 2; the whole batch had been left out, so a WG that
    fit whole was cut into 9 chunks; at batch 34, 8, 4, 2: a chunk of 17 would end inside
    a finest chunk of 2)."""
    sizes = halvings(images)[:4]
    whole = images % sizes[-1] == 0 or images >= batch
    return sizes[:1] * whole + [size for size in sizes[1:] if size % sizes[-1] == 0]


def _grouped_maps(grouped: dict[int, list[tuple]], group: int) -> list[tuple]:
    """The count maps of the finest chunks (`grouped[1]`) summed `group` at a time, each
    grouping kept in `grouped`: an even group sums pairs of the half group's maps, so the
    plans of one phase share their sums instead of each adding up the finest maps."""
    if group not in grouped:
        fine = grouped[1]
        if group % 2 == 0:
            half = _grouped_maps(grouped, group // 2)
            grouped[group] = [_sum_maps(half[i:i + 2]) for i in range(0, len(half), 2)]
        else:
            grouped[group] = [_sum_maps(fine[i:i + group]) for i in range(0, len(fine), group)]
    return grouped[group]


def _sum_maps(maps: list[tuple]) -> tuple:
    """The count maps of consecutive reduction chunks taken together."""
    return tuple(None if ms[0] is None else sum(ms[1:], ms[0]) for ms in zip(*maps, strict=True))


def _slice_reduction(layer: LayerCapture, phase: int, c0: int, c1: int) -> LayerCapture:
    """FF: input channels [c0, c1) (of X and W); BP: output channels [c0, c1) (of dY and W)."""
    return _reduction_part(layer, phase, lambda t, dim: t.narrow(dim, c0, c1 - c0))


def _reduction_part(layer: LayerCapture, phase: int,
                    take: Callable[[torch.Tensor, int], torch.Tensor]) -> LayerCapture:
    """The layer with `take` applied to its reduction's channels: FF's and WG's input
    channels (of X and W), BP's output channels (of dY and W)."""
    def cut(t: torch.Tensor | None, dim: int) -> torch.Tensor | None:
        return None if t is None else take(t, dim)

    if phase in (FF, WG):
        return replace(layer, x_nz=cut(layer.x_nz, 1), w_nz=cut(layer.w_nz, 1),
                       x_valid=cut(layer.x_valid, 1), w_tracked=cut(layer.w_tracked, 1),
                       dx_nz=cut(layer.dx_nz, 1))
    return replace(layer, dy_nz=cut(layer.dy_nz, 1), w_nz=cut(layer.w_nz, 0),
                   w_tracked=cut(layer.w_tracked, 0), y_spec=cut(layer.y_spec, 1),
                   y_nz=cut(layer.y_nz, 1), y_relu_nz=cut(layer.y_relu_nz, 1),
                   y_folded_nz=cut(layer.y_folded_nz, 1),
                   y_folded_relu_nz=cut(layer.y_folded_relu_nz, 1))


def _compacted(layer: LayerCapture, phase: int, hw: HardwareView, policy: SkipPolicy,
               pruned_grads_unused: bool, circulant_block: int
               ) -> tuple[LayerCapture, int, int]:
    """Channel compaction of the reduction's input (`hw.channel_compaction`): the layer
    without the channels whose weights are all pruned, with the channel counts before and
    after. FF and WG drop such input channels of X (WG only when it skips pruned weights'
    gradients: their dW is all it would make of them), BP such output channels of dY: no
    output needs them, so they are not read, sent, scanned or dealt a PE, as HPPU's level-1
    selector and a loop bound over the active channels do. Only output channels had been
    compacted: X's pruned channels crossed DRAM, the NoC and the selector for nothing. Not
    for a grouped or FFT-domain layer, whose reduction is not cut."""
    c = layer.w_nz.shape[0 if phase == BP else 1]
    masked_wg = policy.pruned_weight_gradients and pruned_grads_unused
    if (not hw.channel_compaction or layer.groups != 1 or circulant_block
            or (phase == WG and not masked_wg)):
        return layer, c, c
    # the channels with a kept weight, found by numpy: torch reduces a bool map over several
    # dims element by element (ResNet-18's largest weight map: 12 ms, against 0.4)
    w = layer.w_nz.numpy()
    kept = w.reshape(len(w), -1) if phase == BP else w.any(0).reshape(c, -1)
    active = torch.from_numpy(np.flatnonzero(kept.any(1)))
    if len(active) in (0, c):
        return layer, c, c
    compacted = _reduction_part(layer, phase, lambda t, dim: t.index_select(dim, active))
    return compacted, c, len(active)


def _count_maps(part: LayerCapture, phase: int, hw: HardwareView, policy: SkipPolicy,
                pruned_grads_unused: bool) -> tuple[torch.Tensor, ...]:
    """Nominal, effectual, processed, speculated (or None) and scanned (or None) MACs of
    `part`: processed per output (the tiler deals outputs to PEs), the others per output row
    (their sums over the row: the tiler only totals them per tile, and a row sum is a row
    length smaller). Scanned: the nominal pairs of the outputs the PEs compute, which their
    index matching ANDs, when they pair two operands' non-zeros in this phase."""
    skipped = processed_operands(phase, policy, pruned_grads_unused)
    scans = bool(hw.index_matching_bits) and skipped["x_nz"] + skipped["w_nz"] + skipped[
        "dy_nz"] >= 2
    # the whole nominal map where the PEs take it or scan it, else its row totals alone
    nominal = nominal_map(part, phase, rows=not (policy.dense or scans))
    effectual = effectual_map(part, phase, pruned_grads_unused=pruned_grads_unused)
    scanned = None
    if scans:
        scanned = nominal
        if phase == WG and skipped["mask_wg"]:  # pruned weights' gradients are not computed
            k, cg, r, s = part.w_nz.shape
            scanned = scanned * part.w_nz.reshape(k, 1, cg, r * s)
    if policy.dense:
        processed = nominal
    elif (skipped == effectual_operands(phase, pruned_grads_unused)):  # skips every
        processed = effectual                                           # ineffectual MAC
    else:
        processed = processed_map(part, phase, policy, pruned_grads_unused=pruned_grads_unused)
    if hw.skip_relu_masked_gradients and phase == BP:  # dX where X is zero is discarded
        processed = processed * part.x_nz.transpose(0, 1)
        scanned = None if scanned is None else scanned * part.x_nz.transpose(0, 1)
    speculated = None
    if hw.speculate_relu_outputs and phase == FF and part.y_spec is not None:
        # The exponent-only pass sees every output (skipping the zeros the PEs skip);
        # the PEs then compute only the outputs it predicts the ReLU keeps.
        speculated, processed = processed, processed * part.y_spec.transpose(0, 1)
        scanned = None if scanned is None else scanned * part.y_spec.transpose(0, 1)

    largest = reduction_size(part, phase)  # no output counts more pairs

    def row_totals(counts: torch.Tensor | None) -> torch.Tensor | None:
        if counts is None or counts.shape[3] == 1:  # (rows of one output: the map itself,
            return counts                           # int32, not an int64 copy of it)
        return exact_sum(counts, 3, keepdim=True, largest=largest)
    return (row_totals(nominal), row_totals(effectual), processed, row_totals(speculated),
            row_totals(scanned))


def _chunk_macs(maps: list[tuple], circulant_block: int) -> list[float]:
    """Each chunk's processed MACs, for `_ChunkFloor`, summed once for all of a plan's
    orders and tile shapes; 0 for FFT-domain (circulant) phases, whose counts are above the
    MACs they do."""
    return [0.0 if circulant_block else float(count_total(m[2])) for m in maps]


def _chunk_psum_bytes(maps: list[tuple], channels: torch.Tensor, hw: HardwareView) -> int:
    """A reduction chunk's partial sums, dense at the accumulator's precision: one per
    output of the busy `channels` (every chunk's maps have the outputs' images, rows and
    length); what `_tile_plan` moves between chunks and `_ChunkFloor` bounds."""
    _, n_img, n_rows, length = maps[0][2].shape
    return len(channels) * n_img * n_rows * length * hw.psum_bytes


class _ChunkFloor:
    """A floor under the objective of a plan's estimate (`plan_key`) from its chunks tiled
    so far and what the others must do whatever their tiles: each stage's total over the
    tiled rows (every stage takes one tile at a time, in any order, so no estimate of rows
    including them is shorter), plus the untiled chunks' MACs over every PE and their
    partial sums' moves, known before tiling (`_plan_rows` adds them: over the port both
    ways, through the buffer, and DRAM both ways when spilled); energy is additive. The
    same for every loop order: chunks innermost interleave the same rows. A WG ranked
    with its neighbours' tiles (`hw.overlap`): the end of its BP's fetches before the
    plan's and the next tiles' totals (`_floor_cycles`), and their energy added.

    Before any chunk is tiled it bounds the whole plan: `tile_phase` does not tile a split
    plan whose floor is above the best plan found so far (8 chunks, 8 tilings, most of the
    search's time), and `_plan_rows` gives one up part-way through the same way; the plan
    chosen is the same."""

    def __init__(self, maps: list[tuple], channels: torch.Tensor, order: str,
                 hw: HardwareView, macs: list[float]) -> None:
        self.hw, self.order, self.chunks, self.done = hw, order, len(maps), 0
        self.macs = macs  # each chunk's (`_chunk_macs`)
        split = order in (KEPT, SPILLED) and len(maps) > 1
        self.psums = _chunk_psum_bytes(maps, channels, hw) if split else 0
        self.stages = np.zeros(6)  # fetch, send, compute, collect, write, DRAM both ways
        self.pj = 0.0

    def add(self, table: np.ndarray) -> float:
        """Take one more chunk's rows; the floor with the rest untiled."""
        self.stages += stage_totals(table, self.hw)
        self.pj += estimated_pj(table, self.hw, 0.0)
        self.done += 1
        return self.floor()

    def floor(self) -> float:
        """The floor with the chunks added so far (none: the whole plan's, before tiling)."""
        hw = self.hw
        rest = self.chunks - self.done
        # every chunk but the first reads the partial sums, every one but the last leaves them
        sent, kept = (rest - (self.done == 0)) * self.psums, (rest - 1) * self.psums
        dram_in, dram_out = (sent, kept) if self.order == SPILLED else (0, 0)
        macs = sum(self.macs[self.done:])
        dram, port = hw.dram_bytes_per_cycle, hw.noc_port_bytes_per_cycle
        cycles = _floor_cycles(hw, self.stages + [
            dram_in / dram, sent / port, hw.ideal_compute_cycles(macs),
            kept / port, dram_out / dram, (dram_in + dram_out) / dram])
        pj = self.pj + hw.estimated_pj(macs=macs, dram=dram_in, dram_write=dram_out,
                                       glb=sent + kept + dram_in, unicast=sent + kept,
                                       local=sent, cycles=cycles) + _neighbours_pj(hw)
        return hw.objective_value(cycles, pj)


def _floor_cycles(hw: HardwareView, totals: np.ndarray) -> float:
    """A floor under the cycles `plan_key` gives a plan whose stage totals (`_ChunkFloor`'s
    six) are at least `totals`: the busiest; for a WG ranked with its neighbours' tiles,
    the end of its BP's fetches plus its own and the next phase's first tiles' totals on
    the busiest stage (`pipeline.Overlap.floor_cycles`)."""
    return float(np.max(totals)) if hw.overlap is None else hw.overlap.floor_cycles(totals)


def _neighbours_pj(hw: HardwareView) -> float:
    """The energy `plan_key` adds to a plan's: its neighbours' (`pipeline.Overlap`)."""
    return 0.0 if hw.overlap is None else hw.overlap.pj


def _tile_plan(parts: list[LayerCapture], maps: list[tuple], shaped: list[tuple],
               channels: torch.Tensor, order: str, layer_index: int, phase: int,
               hw: HardwareView, policy: SkipPolicy, where: str, pruned_grads_unused: bool,
               circulant_block: int, built: dict,
               resident: tuple[bool, bool] = (False, False), cache: dict | None = None,
               bound: float | None = None, chunk_macs: list[float] | None = None,
               out_ratio: float = 1.0
               ) -> tuple[np.ndarray, int, int, int, tuple, TileShape] | None:
    """The event rows of one plan (its chunks in `order`), the weight bytes it reads, the
    bytes of its final outputs, the buffer budget its tiles need, the rows' `plan_key`
    (the caller ranks the plans by it) and the tile shape; None when every tile shape's
    chunks tiled so far already estimate above `bound` (the best objective found before)
    or above the best shape's, so that the plan cannot win (`_plan_rows`).

    Chunks outermost pass partial sums between chunks: they go to the PEs' accumulators
    with a tile and come back after it, dense at the accumulator's precision, through the
    global buffer (KEPT) and also DRAM (SPILLED). `resident`: whether the stream and the
    channel operand are already in the buffer (`tile_part`). `out_ratio`: the phase's output
    as written over dense (`written_ratio`; 1 for a dense format), the tile search's
    estimate of the results."""
    _, n_img, n_rows, length = maps[0][2].shape
    tiling_hw, psum_share = hw, 0
    n = len(parts)
    psums = _chunk_psum_bytes(maps, channels, hw)
    # A chunk's mean share of the partial sums' moves: read back by every chunk but the
    # first, and written out by every chunk but the last (through DRAM when spilled).
    psums_sent = psums * (n - 1) / n if order in (KEPT, SPILLED) else 0.0
    psums_dram = 2 * psums_sent if order == SPILLED else 0.0
    if order == KEPT:  # the partial sums take their share of both halves of the buffer
        psum_share = -(-psums // 2)
        budget = hw.buffer_bytes - psum_share
        if budget <= 0:
            raise ConfigError(f"{where}: the partial sums ({psums} bytes) do not fit the "
                              "global buffer", key=BUFFER_KEY)
        tiling_hw = replace(hw, buffer_bytes=budget)
    # sized by the chunk whose tiles take the most room: WG's runs of rows differ in their
    # input windows (the first is cut short by the padding), other chunks only shrink
    ps, win = max(shaped, key=lambda shape: shape[0].stream_row_elems)
    room = output_room(order, n, hw)
    tracked = tracked_weights(parts[0], phase, shaped[0][0], hw, circulant_block, cache)
    mac_ratio = circulant_mac_ratio(parts[0], circulant_block) if circulant_block else 1.0
    weights = phase != WG and parts[0].weight_is_parameter  # the channel operand is W
    stored = stored_ratios(ps, hw, weights, circulant_block)  # the search's and the sizing's

    def search(budget: int) -> list[TileShape]:
        return choose_tile(ps, win, len(channels), n_img, n_rows, length,
                           replace(tiling_hw, buffer_bytes=budget), where, weights=weights,
                           stored=stored,
                           stream_resident=resident[0], channel_resident=resident[1],
                           processed=maps[0][2],  # the first chunk's, as the others
                           psums_sent=psums_sent, psums_dram=psums_dram, cache=cache,
                           tracked=tracked,
                           scanned=0.0 if maps[0][4] is None else float(count_total(maps[0][4])),
                           out_ratio=out_ratio, out_elem_bytes=room,
                           inner=n if order == INNER else 0, circulant_block=circulant_block,
                           mac_ratio=mac_ratio, first_waits=phase != WG)

    def rows(shape: TileShape, best: tuple | None) -> tuple | None:
        limit = bound if best is None else min(best[4][0], np.inf if bound is None else bound)
        return _plan_rows(parts, maps, shaped, channels, order, layer_index, phase, hw, policy,
                          pruned_grads_unused, circulant_block, built, resident, shape, cache,
                          bound=limit, chunk_macs=chunk_macs)

    def sized(shape: TileShape) -> int:
        return tile_bytes(shape, ps, win, (n_rows, length), int(ps.channel_operand.elems[0]),
                          hw.element_bytes, *resident, out_elem_bytes=room, stored=stored)

    best = searched(search, tiling_hw.buffer_bytes, rows, sized, hw, n, where)
    if best is None:
        return None
    table, weight_bytes, out_bytes, need, key, shape = best
    return table, weight_bytes, out_bytes, psum_share + need, key, shape


def searched(search: Callable[[int], list[TileShape]], budget: int,
             rows: Callable[[TileShape, tuple | None], tuple | None],
             sized: Callable[[TileShape], int], hw: HardwareView, chunks: int, where: str
             ) -> tuple | None:
    """The best of the tile search's shapes, each decided on its own rows (`rows`: its
    event rows, weight bytes and output bytes, given the best so far; None: sure to lose,
    not built), ranked by `plan_key`: (rows, weight bytes, output bytes, the buffer bytes its
    largest tile takes, key, shape), or None if every shape was sure to lose. The search
    sizes a tile within `budget` at its blocks' bytes as the layer's compression estimates
    them, no more than dense (`sized`, `tiling.tile_bytes`), which a block can exceed: one
    denser than the layer, or a format larger than dense (a bitmap adds a bit an element,
    1/16 more than dense fp16 data). A shape whose tiles overflow as stored (`held_bytes`)
    is not kept, and the search runs again in a budget smaller by the overflow and too
    small for that shape, until the shapes it gives fit (or none does: an error that names
    the overflow, unless a shape was kept)."""
    room, best, over = budget, None, []
    while True:
        try:
            shapes = search(room)
        except ConfigError as err:
            if best is not None:
                return best
            if not over:
                raise
            held, size = min(over)
            raise StoredOverflow(
                f"{where}: its smallest tile that fits the {budget} bytes the global buffer "
                f"gives a tile (estimated at {size}) holds {held} as its formats store "
                "them (a bitmap adds a bit an element); enlarge the buffer or shrink the "
                "batch", key=BUFFER_KEY) from err
        over = []
        for shape in shapes:
            built = rows(shape, best)
            if built is None:
                continue
            table, weight_bytes, out_bytes = built
            held, size = int(table["held_bytes"].max()), sized(shape)
            if held > budget >= size:  # its blocks as stored overflow its half
                over.append((held, size))
                continue
            key = plan_key(table, hw, chunks)
            if best is None or key < best[4]:
                best = (table, weight_bytes, out_bytes, max(held, size), key, shape)
        if not over:
            return best
        room = min(min(room * budget // held, size - 1) for held, size in over)


def _across_slices(layer: LayerCapture, phase: int, hw: HardwareView,
                   split: tuple[str, int] | None, circulant_block: int) -> list[LayerCapture]:
    """The slices of a phase's reduction dealt to the clusters (`partition: reduction`): FF's
    input channels, BP's output channels or WG's images, cut as evenly as can be into one a
    cluster (fewer when the reduction is shorter). None (an empty list) when the design
    does not deal the reduction, or the phase cannot: a grouped or FFT-domain layer (whose
    reduction is not cut, as for chunks), a WG whose whole batch does not fit one tile
    (`_wg_split`: its images are already chunks run one after the other), a reduction of
    one."""
    if "reduction" not in hw.partitions or layer.groups != 1 or circulant_block:
        return []
    if phase == WG:
        extent = layer.dy_nz.shape[0]
        if split != ("images", extent):
            return []
    else:
        extent = layer.w_nz.shape[1] if phase == FF else layer.w_nz.shape[0]
    count = min(hw.clusters, extent)
    cuts = [i * extent // count for i in range(count + 1)]
    cut = (lambda a, b: _slice(layer, a, b)) if phase == WG else (
        lambda a, b: _slice_reduction(layer, phase, a, b))
    return [cut(a, b) for a, b in pairwise(cuts)] if count > 1 else []


def _across_floor(totals: dict, outputs: int, slices: int, hw: HardwareView) -> float:
    """A floor under the objective of a reduction dealt to `slices` clusters, before its
    slices are counted: its MACs over every PE, and a partial sum of each of the `outputs`
    from every slice over the port back, into the buffer, the running sums read and the
    adds (`estimated_pj`'s terms): no tiling of it does less."""
    macs = float(totals["processed_macs"])
    psums = float(slices * outputs * hw.psum_bytes)
    cycles = _floor_cycles(hw, np.array([0.0, 0.0, hw.ideal_compute_cycles(macs),
                                         psums / hw.noc_port_bytes_per_cycle, 0.0, 0.0]))
    pj = hw.estimated_pj(macs=macs, unicast=psums, cycles=cycles,
                         glb=psums * (2 * slices - 1) / slices,
                         adds=float((slices - 1) * outputs)) + _neighbours_pj(hw)
    return hw.objective_value(cycles, pj)


# What the slices of a reduction dealt to the clusters add up to, tile by tile.
ACROSS_SUMMED = ("dram_read_bytes", "weight_read_bytes", "dram_write_bytes", "glb_read_bytes",
                 "held_bytes", "selector_entries", "regenerated_weights", "regenerated_bytes",
                 "speculated_ops", "scanned_pairs", "processed_macs", "effectual_macs", "macs")


def _tile_across(layer: LayerCapture, slices: list[LayerCapture], maps: list[tuple],
                 shaped: list[tuple], channels: torch.Tensor, layer_index: int, phase: int,
                 hw: HardwareView, policy: SkipPolicy, where: str, pruned_grads_unused: bool,
                 resident: tuple[bool, bool], cache: dict, out_ratio: float
                 ) -> tuple[np.ndarray, int, int, int, tuple, TileShape]:
    """`_tile_plan` of a reduction dealt to the clusters, a slice a cluster (`slices`, their
    count maps and operand statistics): the tile search on the whole reduction
    (`choose_tile`'s `slices`), then each candidate's rows (`_across_rows`)."""
    _, n_img, n_rows, length = maps[0][2].shape
    ps, win = summed_phase_shape(layer, phase, hw, shaped)
    scanned = sum(0.0 if m[4] is None else float(m[4].sum()) for m in maps)
    room = output_room(ACROSS, len(slices), hw)
    weights = phase != WG and layer.weight_is_parameter  # the channel operand is W
    stored = stored_ratios(ps, hw, weights)  # the search's and the sizing's

    def search(budget: int) -> list[TileShape]:
        return choose_tile(ps, win, len(channels), n_img, n_rows, length,
                           replace(hw, buffer_bytes=budget), where, weights=weights,
                           stored=stored,
                           stream_resident=resident[0], channel_resident=resident[1],
                           processed=_sum_maps(maps)[2], cache=cache,
                           tracked=tracked_weights(layer, phase, ps, hw, 0, cache),
                           scanned=scanned, slices=len(slices), out_ratio=out_ratio,
                           out_elem_bytes=room, first_waits=phase != WG)

    def rows(shape: TileShape, _best: tuple | None) -> tuple:
        return _across_rows(slices, maps, shaped, channels, layer_index, phase, hw, policy,
                            pruned_grads_unused, resident, shape, cache, room)

    def sized(shape: TileShape) -> int:
        return tile_bytes(shape, ps, win, (n_rows, length), int(ps.channel_operand.elems[0]),
                          hw.element_bytes, *resident, out_elem_bytes=room, stored=stored)

    best = searched(search, hw.buffer_bytes, rows, sized, hw, len(slices), where)
    assert best is not None  # every shape is built: one is kept, or the search raises
    return best


def _across_rows(slices: list[LayerCapture], maps: list[tuple], shaped: list[tuple],
                 channels: torch.Tensor, layer_index: int, phase: int, hw: HardwareView,
                 policy: SkipPolicy, pruned_grads_unused: bool, resident: tuple[bool, bool],
                 shape: TileShape, cache: dict, room: int) -> tuple[np.ndarray, int, int]:
    """A reduction dealt to the clusters in tiles of `shape`: each slice tiled as its own
    cluster's work (every channel of the tile to that one cluster, `tile_part`), the
    slices' tile i run side by side as the plan's tile i. The tile lasts as long as the
    busiest PE of any cluster; each cluster is sent its slice of both operands (unicast)
    and sends back a partial sum of every output, at the accumulator's precision; the
    global buffer adds each after the first into the running sum (`reduced_psums`: read,
    added, written back) and writes the final outputs, the first slice's rows' (`last`:
    the outputs of every slice are the same), the running sums taking `room` bytes an
    output in the buffer. Returns the rows, the weight bytes read from DRAM and the final
    outputs' bytes."""
    one = replace(hw, clusters=1, partitions=("channels",))
    dealt = replace(shape, partition="channels")
    tables, weight_bytes = [], 0
    for i, (part, m) in enumerate(zip(slices, maps, strict=True)):
        # (each slice's partial sums: a tile's outputs at the accumulator's precision)
        table, wb, psums = tile_part(part, shaped[i], layer_index, phase, one, policy, m,
                                     channels, dealt, pruned_grads_unused=pruned_grads_unused,
                                     last=i == 0, reuse=True, stream_resident=resident[0],
                                     channel_resident=resident[1], cache=cache)
        tables.append(table)
        weight_bytes += wb
    out_bytes = int(tables[0]["gather_bytes"].sum())
    n = len(slices)
    rows = tables[0].copy()
    for column in ACROSS_SUMMED:
        rows[column] = np.sum([t[column] for t in tables], axis=0)
    rows["busiest_pe_macs"] = np.max([t["busiest_pe_macs"] for t in tables], axis=0)
    rows["unicast_bytes"] = np.sum([t["multicast_bytes"] + t["unicast_bytes"] for t in tables],
                                   axis=0)
    rows["multicast_bytes"] = 0
    rows["gather_bytes"] = n * psums
    rows["reduced_psums"] = (n - 1) * psums // hw.psum_bytes
    # every slice's rows gave its outputs an element's room: the running sums take `room`
    rows["held_bytes"] += psums // hw.psum_bytes * (room - n * hw.element_bytes)
    rows["glb_write_bytes"] = (rows["dram_read_bytes"] + rows["regenerated_bytes"]
                               + rows["gather_bytes"])
    rows["active_clusters"] = n
    rows["dealt"] = DEALT.index("reduction")
    return rows, weight_bytes, out_bytes


def mapping_text(shape: TileShape, chunks: int, order: str, phase: int,
                 size: torch.Size) -> str:
    """A layer-phase's plan in words, as layers.csv's `mapping` gives it (Timeloop prints
    its mapping): the tile (output channels by whole images or by rows of one image; WG's
    "rows" are input channels), the operand that stays in the buffer across the inner loop
    (`mapping.dataflow`'s words: the weights, WG's dY, for weight stationary; the input
    rows, WG's X, for input stationary) and the reduction, whole, in chunks (their
    partial sums kept in the buffer, spilled to DRAM, or chunks innermost) or dealt to the
    clusters (`ACROSS`)."""
    n_rows = size[2]
    rows = min(shape.rows, n_rows)
    if phase == WG:  # dW has no images: a tile of all its rows is of every input channel
        block = f"{rows} input channel{'s' * (rows > 1)}"
    else:
        block = (f"{shape.images} image{'s' * (shape.images > 1)}" if shape.rows >= n_rows
                 else f"{rows} row{'s' * (rows > 1)}")
    stationary = "input stationary" if shape.rows_outer else "weight stationary"
    reduction = ("whole reduction" if chunks == 1 else
                 f"reduction across {chunks} clusters" if order == ACROSS else
                 f"{chunks} reduction chunks, " + {INNER: "innermost", KEPT: "sums kept",
                                                   SPILLED: "sums spilled"}[order])
    return f"{shape.ka} ch x {block}, {stationary}, {reduction}"


def _plan_rows(parts: list[LayerCapture], maps: list[tuple], shaped: list[tuple],
               channels: torch.Tensor, order: str, layer_index: int, phase: int,
               hw: HardwareView, policy: SkipPolicy, pruned_grads_unused: bool,
               circulant_block: int, built: dict, resident: tuple[bool, bool],
               shape: TileShape, cache: dict | None = None, bound: float | None = None,
               chunk_macs: list[float] | None = None) -> tuple[np.ndarray, int, int] | None:
    """A plan's event rows with every chunk in tiles of `shape`, the weight bytes they read
    and the bytes of the final outputs; a chunk's partial sums ride with its tiles.

    None, with the remaining chunks not tiled, as soon as the chunks tiled so far and a
    floor under the others (`_ChunkFloor`) put the plan's objective above `bound`: its
    estimate could only be higher, so it could not win. Most split plans that the search
    tiles lose, and tiling their chunks was most of its time."""
    n = len(parts)
    tables, weight_bytes = [], 0
    # spilled partial sums pass through the buffer with each tile, beside its outputs' room
    psum_room = output_room(order, n, hw) - hw.element_bytes if order == SPILLED else 0
    floor = None
    if bound is not None:
        floor = _ChunkFloor(maps, channels, order, hw,
                            _chunk_macs(maps, circulant_block) if chunk_macs is None
                            else chunk_macs)
    for i, (part, m) in enumerate(zip(parts, maps, strict=True)):
        key = (i, shape, order == INNER)
        if key not in built:
            built[key] = tile_part(part, shaped[i], layer_index, phase, hw, policy, m,
                                   channels, shape, pruned_grads_unused=pruned_grads_unused,
                                   last=i == n - 1, reuse=order != INNER,
                                   circulant_block=circulant_block,
                                   stream_resident=resident[0], channel_resident=resident[1],
                                   cache=cache)
        table, wb, psums = built[key]
        weight_bytes += wb
        if order in (KEPT, SPILLED) and n > 1:
            table = table.copy()
            spilled = order == SPILLED
            if i > 0:      # this chunk starts from the partial sums
                table["unicast_bytes"] += psums
                table["glb_read_bytes"] += psums
                if spilled:
                    table["dram_read_bytes"] += psums
                    table["glb_write_bytes"] += psums
            if i < n - 1:  # ... and leaves them
                table["gather_bytes"] += psums
                table["glb_write_bytes"] += psums
                if spilled:
                    table["dram_write_bytes"] += psums
            table["held_bytes"] += psums // hw.psum_bytes * psum_room
        tables.append(table)
        if floor is not None and i < n - 1 and floor.add(table) > bound * (1 + 1e-9):
            return None
    # The last chunk's own rows gather the final outputs (partial sums are added to copies).
    out_bytes = int(built[(n - 1, shape, order == INNER)][0]["gather_bytes"].sum())
    if order == INNER:
        # (tile 0 chunk 0, tile 0 chunk 1, ..., tile 1 chunk 0, ...): every tile holds new
        # blocks of both operands (built with reuse=False).
        return np.stack(tables, axis=1, dtype=TILE_DTYPE).reshape(-1), weight_bytes, out_bytes
    # (chunk 0: every tile, chunk 1: ...)
    return concat_tables(tables), weight_bytes, out_bytes


def _wg_split(layer: LayerCapture, hw: HardwareView, dy_resident: bool = False,
              finer_than: tuple[str, int] | None = None) -> tuple[str, int] | None:
    """How WG's reduction (over images, then over output rows) splits into as few chunks as
    fit at dense bytes: ("images", m), groups of m images (all of them when the whole batch
    fits), else ("rows", r), runs of r output rows of one image (`dy_resident`: dY is in
    the buffer already and takes no tile room). Its chunks are `_wg_parts`. `finer_than`:
    the first split that fits after that one (None if there is none)."""
    n, _, p, _ = layer.dy_nz.shape
    k, cg, r, s = layer.w_nz.shape

    def smallest_tile_fits(part: LayerCapture) -> bool:
        ps, win = phase_shape(part, WG, hw)
        _, need = smallest_tile(ps, win, k, cg, r * s, hw, channel_resident=dy_resident)
        return need <= hw.buffer_bytes

    splits = ([("images", m) for m in sorted(set(halvings(n)), reverse=True)]
              + [("rows", rows) for rows in sorted(set(halvings(p)), reverse=True)])
    if finer_than is not None:
        splits = splits[splits.index(finer_than) + 1:]
    for kind, size in splits:
        if smallest_tile_fits(_widest_wg_part(layer, (kind, size))):
            return kind, size
    # the whole batch: choose_tile reports the misfit
    return ("images", n) if finer_than is None else None


def _wg_parts(layer: LayerCapture, split: tuple[str, int]) -> list[LayerCapture]:
    """The chunks of WG's reduction `split` (`_wg_split`) describes, in order."""
    n, _, p, _ = layer.dy_nz.shape
    kind, size = split
    starts = [(i, p0) for i in range(n) for p0 in range(0, p, size)] if kind == "rows" \
        else [(i, 0) for i in range(0, n, size)]
    if kind == "rows":
        return [_slice_rows(layer, i, p0, min(p0 + size, p)) for i, p0 in starts]
    return [_slice(layer, i, min(i + size, n)) for i, _ in starts]


def _widest_wg_part(layer: LayerCapture, split: tuple[str, int]) -> LayerCapture:
    """The chunk of WG's `split` whose tiles take the most buffer: the first of whole
    images; of runs of rows, the first run with the most input rows in the image (the
    first run's window is cut short by the padding above it: sized by it, a run in the
    middle had overflowed the buffer `desim check` had passed)."""
    kind, size = split
    if kind == "images":
        return _slice(layer, 0, size)
    p = layer.dy_nz.shape[2]
    runs = [(p0, min(p0 + size, p)) for p0 in range(0, p, size)]
    def rows_in(run: tuple[int, int]) -> int:  # the image's rows among the window's
        _, _, lo, hi = _input_window(layer, *run)
        return hi - lo
    return _slice_rows(layer, 0, *max(runs, key=rows_in))


def _input_window(layer: LayerCapture, p0: int, p1: int) -> tuple[int, int, int, int]:
    """The input rows [h0, h1) output rows [p0, p1) need, in padded coordinates, and the
    image's rows [lo, hi) among them."""
    reach = (layer.w_nz.shape[2] - 1) * layer.dilation
    h0, h1 = p0 * layer.stride, (p1 - 1) * layer.stride + reach + 1
    height = layer.x_nz.shape[2]
    lo, hi = (min(max(h - layer.padding, 0), height) for h in (h0, h1))
    return h0, h1, lo, hi


def _slice(layer: LayerCapture, n0: int, n1: int) -> LayerCapture:
    return replace(layer, x_nz=layer.x_nz[n0:n1], dy_nz=layer.dy_nz[n0:n1],
                   x_valid=None if layer.x_valid is None else layer.x_valid[n0:n1])


def _slice_rows(layer: LayerCapture, n: int, p0: int, p1: int) -> LayerCapture:
    """Output rows [p0, p1) of image n, with the input rows they need, padded explicitly
    (only those rows are cut and padded: a large image has thousands of such runs)."""
    pad = layer.padding
    h0, h1, lo, hi = _input_window(layer, p0, p1)
    rows = layer.x_nz[n:n + 1, :, lo:hi]
    top = min(max(pad - h0, 0), h1 - h0)                        # the padding's above them
    around = (pad, pad, top, h1 - h0 - top - (hi - lo))         # left right top bottom
    x = torch.nn.functional.pad(rows.to(torch.uint8), around)
    valid = torch.nn.functional.pad(torch.ones_like(rows, dtype=torch.uint8), around)
    return replace(layer, x_nz=x.bool(), dy_nz=layer.dy_nz[n:n + 1, :, p0:p1],
                   padding=0, x_valid=valid.bool())
