"""The mapper: a captured workload on a hardware view, as an event table per layer-phase.

Phases run in training order: FF of every layer front to back, then for every layer back to
front its BP (skipped for the first layer, whose input needs no gradient), its WG and, where
the workload asks for one, its weight update WU (`mappings.update`). Vector layers (batch
norm, activations, pooling, residual adds and forks, softmax) sit where they ran: FF after
the conv/linear layer they follow, BP before its BP. A layer-phase starts once the phases
whose outputs it reads are written back (`phase_waits`): a layer's WG overlaps its BP and
what follows, so its plans are ranked with those phases' tiles around theirs
(`pipeline.Overlap`, `bp_before`; the phase after it is mapped first for that,
`PhaseMapper.next_tiles`). With inter-layer reuse, a phase's output may stay in
the global buffer for the next FF or BP that reads it (`keep_output_on_chip`), a gradient
kept for a layer's BP through its WG too (`wg_reads_kept_gradient`), and a WG's dW for its
weight update (`update_reads_kept_gradient`); what no later phase reads from DRAM is then
not written there. A design that fuses the update into the WG's output stream
(`vector_unit.fused_update`) never writes dW.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from desim.errors import ConfigError, out_of_memory_as
from desim.events import PHASES, concat_tables, empty_table
from mappings.capture import LayerCapture, PackedLayer
from mappings.counting import BP, FF, WG, WU, SkipPolicy
from mappings.formats import BlockStats
from mappings.pipeline import Overlap, plan_key
from mappings.planner import tile_phase
from mappings.target import HardwareView
from mappings.threads import counting_threads
from mappings.tiling import written_bytes, written_stats
from mappings.update import update_tiles
from mappings.vector import (
    result_bytes,
    stored_gradients,
    stored_outputs,
    stored_second_gradients,
    vector_tiles,
)
from mappings.workload import Workload


@dataclass
class PhaseWork:
    name: str          # the layer's module name
    layer: int         # its id in the event table: conv/linear >= 0, vector layers < 0
    phase: int
    table: np.ndarray
    macs: int = 0
    effectual_macs: int = 0
    processed_macs: int = 0
    weight_dram_bytes: int = 0  # bytes of weights read from DRAM (FF and BP of weight layers)
    output_bytes: int = 0   # bytes of its result as written (FF: Y, BP: dX, WG: dW)
    tile_buffer_bytes: int = 0  # buffer budget its plan's largest tile needs (conv/linear)
    mapping: str = ""       # its plan in words (`planner.mapping_text`; conv/linear)
    input_elems: int = 0    # elements of the input it streams (FF: X, BP: dY; WG: 0)
    output_elems: int = 0   # elements of its result
    input_resident: bool = False  # its input was left in the global buffer by the phase before
    buffer_bytes: int = 0   # the tile budget it was mapped under (HardwareView.buffer_bytes)
    output_written: bool = True   # its result goes to DRAM (HardwareView.output_to_dram)
    # a MatMul's WG: the gradient of its second operand, an activation, which the BP of the
    # layer that made that operand reads (a weight gradient only the layer's update reads)
    activation_gradient: bool = False

    @property
    def on_vector_unit(self) -> bool:
        """A vector layer's phase or a weight update: the vector unit's, not the PEs'."""
        return self.layer < 0 or self.phase == WU


def updated(workload: Workload, layer_id: int) -> bool:
    """Whether the layer's weights get an update phase WU: the workload asks for one and
    they are a parameter (a matmul's "weight" is an activation) that trains (not frozen)."""
    layer = workload.layers[layer_id]
    return (workload.spec.weight_update != "none" and layer.weight_is_parameter
            and layer.weight_trained)


def training_order(workload: Workload) -> list[tuple[int, int]]:
    """(layer id, phase) in the order they run; vector layer v has id -1 - v."""
    n = len(workload.layers)
    following: dict[int, list[int]] = {}
    for v, vector in enumerate(workload.vectors):
        following.setdefault(vector.after, []).append(-1 - v)
    order = [(v, FF) for v in following.get(-1, [])]
    for i in range(n):
        order += [(i, FF)] + [(v, FF) for v in following.get(i, [])]
    def back(vectors: list[int]) -> list[tuple[int, int]]:  # those a gradient reaches
        return [(v, BP) for v in reversed(vectors) if workload.vectors[-1 - v].has_gradient]

    for i in reversed(range(n)):
        order += back(following.get(i, []))
        if workload.layers[i].needs_input_grad:
            order.append((i, BP))
        if workload.layers[i].weight_trained:
            order.append((i, WG))
        if updated(workload, i):
            order.append((i, WU))
    order += back(following.get(-1, []))
    if workload.spec.inference:
        order = [(layer, phase) for layer, phase in order if phase == FF]
    return order


def _reads_speculated(workload: Workload, hw: HardwareView) -> set[int]:
    """The vector layers (their indices) whose input is a speculated conv/linear layer's FF
    output: the first after that layer, of its output's size. The layer writes its outputs
    only where the prediction said non-zero (`tiling._written_map`), and that is what they
    read; they had read the exact output, all of it (a batch norm's input is dense: twice
    the bytes the layer wrote, in FF and again in BP)."""
    if not hw.speculate_relu_outputs:
        return set()
    first: dict[int, int] = {}
    for i, v in enumerate(workload.vectors):
        first.setdefault(v.after, i)
    return {i for after, i in first.items()
            if after >= 0 and workload.layers[after].y_spec is not None
            and workload.vectors[i].kind not in ("add", "fork")
            and workload.vectors[i].in_elems == math.prod(workload.layers[after].dy_nz.shape)}


class PhaseMapper:
    """Maps one layer-phase of a workload to its event rows, on a hardware view (a phase is
    mapped again when inter-layer reuse changes its buffer budget or input)."""

    def __init__(self, workload: Workload, hw: HardwareView) -> None:
        self.workload = workload
        self.policy = SkipPolicy(weights=hw.skip_zero_weights,
                                 activations=hw.skip_zero_activations,
                                 gradients=hw.skip_zero_gradients,
                                 pruned_weight_gradients=hw.skip_pruned_weight_gradients)
        # CirCNN: the layers the run pruned block-circulant run by FFT on such hardware.
        self.circulant = workload.pruning.b if (hw.circulant_fft and workload.pruning.method
                                                == "block_circulant") else 0
        self.pruned = set(getattr(workload, "pruned_layers", ()))
        self.stored = stored_outputs(workload.vectors, hw)  # what each vector layer writes in FF
        self.stored_dy = stored_gradients(workload.vectors, hw)  # ... and reads as dY in BP
        self.stored_second = stored_second_gradients(workload.vectors, hw)  # a fork's other
        # The vector layer that reads a speculated layer's output (a batch norm between it and
        # its ReLU): it reads what that layer wrote, the outputs predicted non-zero (their
        # statistics, counted once: FF, BP and any re-map read the same), but in BP every
        # output where the design says exact training does (`speculated_norm_reads_every`)
        self.reads_speculated: dict[int, BlockStats | None] = dict.fromkeys(
            _reads_speculated(workload, hw))
        # At inference, the layers whose batch norm is folded into their weights: they write
        # the norm's output (or its ReLU's), not their own.
        self.folded = ({v.after for v in workload.vectors if v.foldable}
                       if workload.spec.inference else set())
        # In training with fused residuals, a block body's first layer writes in BP the sum
        # of both branches' gradients (the fork's), not its own dX.
        self.writes_fork_sum = hw.fused_residual and not workload.spec.inference
        self._sum_rest: dict[str, int] = {}  # ... the bytes of the sum its BP did not write
        self._dw_bytes: dict[int, int] = {}  # each layer's dW as its WG wrote it
        self._unpacked: dict[int, LayerCapture] = {}  # the last two layers unpacked
        # ... and the last four phases counted: between a BP's first mapping (made ahead,
        # `next_tiles`) and inter-layer reuse's re-map of it, three others are counted (the
        # WG of the layer after it, the next BP's first mapping, its own WG); with two kept,
        # each such BP was counted twice (~0.25 s of ResNet-18's ImageNet run at batch 8)
        self._counted: dict[tuple[int, int], dict] = {}
        self.hw = hw  # the view every phase is first mapped on (`first`)
        self.order = training_order(workload)  # the phases in the order they run
        self._ahead: dict[tuple[int, int], PhaseWork | None] = {}  # mapped before their turn
        self._after_wg: dict[int, np.ndarray] = {}  # the tiles after each layer's WG
        self._first_tiles: dict[tuple[int, int], np.ndarray] = {}  # of each first mapping

    def first(self, layer_id: int, phase: int, overlaps: PhaseWork | None = None
              ) -> PhaseWork | None:
        """The phase's first mapping, on the whole buffer with no input kept on chip (as
        `__call__`): made now, or already by a look-ahead (`next_tiles`,
        `following_tiles`; a vector phase's is made again, between its neighbours)."""
        key = (layer_id, phase)
        if key in self._ahead and layer_id >= 0:
            work = self._ahead.pop(key)
        else:  # a vector phase mapped ahead (`next_tiles`, `following_tiles`) is ranked
            # again with its neighbours (`__call__`)
            self._ahead.pop(key, None)
            work = self(layer_id, phase, self.hw, overlaps=overlaps)
        self._first_tiles[key] = (work.table[:Overlap.TILES] if work is not None
                                  else empty_table(0))
        return work

    def following_tiles(self, layer_id: int, phase: int) -> np.ndarray:
        """The first tiles (`Overlap.TILES`) of the first mapping of the next phase with
        tiles in the order they run (none after the last): mapped now, if not yet, for
        `first` to hand over in its turn. Its first mapping reads nothing this phase's
        tiling changes (the whole buffer, no input kept on chip), so it maps the same now as
        then."""
        at = self.order.index((layer_id, phase))
        for key in self.order[at + 1:]:
            if key in self._first_tiles:
                tiles = self._first_tiles[key]
            else:
                if key not in self._ahead:
                    self._ahead[key] = self(*key, self.hw)
                ahead = self._ahead[key]
                tiles = ahead.table[:Overlap.TILES] if ahead is not None else empty_table(0)
            if len(tiles):
                return tiles
        return empty_table(0)

    def next_tiles(self, layer_id: int) -> np.ndarray:
        """The first tiles of the phase that runs after the layer's WG (`Overlap.TILES`
        of them; none where an update follows, which waits for its dW, or where no later
        phase has tiles): that phase is mapped now, for `first` to hand over in its turn.
        Nothing it reads is made by the WG (a WG writes only dW, which only the update
        reads), so it maps the same now as then."""
        if layer_id not in self._after_wg:
            self._after_wg[layer_id] = (empty_table(0) if updated(self.workload, layer_id)
                                        else self.following_tiles(layer_id, WG))
        return self._after_wg[layer_id]

    def reads_previous(self, layer_id: int) -> bool:
        """Whether the layer's input is the output of the layer just before it in forward
        order (`LayerCapture.reads_previous`), so that inter-layer reuse may find it on chip."""
        if layer_id < 0:
            return self.workload.vectors[-1 - layer_id].reads_previous
        return self.workload.layers[layer_id].reads_previous

    def layer(self, layer_id: int) -> LayerCapture:
        def unpacked() -> LayerCapture:
            layer = self.workload.layers[layer_id]
            layer = layer.unpack() if isinstance(layer, PackedLayer) else layer
            if layer_id in self.folded:
                layer = replace(layer, y_nz=layer.y_folded_nz, y_relu_nz=layer.y_folded_relu_nz)
            if self.writes_fork_sum and layer.dx_sum_nz is not None:
                layer = replace(layer, dx_nz=layer.dx_sum_nz)
            return layer
        return _recent(self._unpacked, layer_id, unpacked)

    def kind(self, layer_id: int) -> str | None:
        """A vector layer's kind ("batchnorm", "add", "fork", ...); None for a conv/linear."""
        return self.workload.vectors[-1 - layer_id].kind if layer_id < 0 else None

    def __call__(self, layer_id: int, phase: int, hw: HardwareView,
                 input_resident: bool = False, overlaps: PhaseWork | None = None,
                 follows: np.ndarray | None = None) -> PhaseWork | None:
        """The phase's work, None when it has no tiles; `input_resident`: its input (FF's
        X, BP's dY, an update's dW) is already in the global buffer. `overlaps`: of a WG,
        its layer's BP just before it (`bp_before`), between which and the next phase its
        plans are ranked (`pipeline.Overlap`): that phase's first mapping (`next_tiles`),
        or `follows`, its tiles as inter-layer reuse mapped it again. Of a vector phase, the
        WG or update just before it (`unwaited_before`), after whose last tiles its tile
        count is ranked: it does not wait for them, and its first tiles are fetched while
        they compute, so larger tiles hide more of its reads than the pass alone shows
        (ResNet-18's forks' BP after a WG on dense.yaml: ranked alone, 32 tiles and each
        pass some 21,000 cycles past the WG's end; four of them had ended 2,500 after).
        The WG was ranked against its first mapping (`next_tiles`). And before the first
        tiles of the phase after it (`following_tiles`, or `follows`), which waits for it
        but reads its first tile's weights ahead, into a half of the buffer the pass leaves
        free (LeNet-5 at batch 4 on dense.yaml with 2 MiB: the first pooling as one tile
        before conv2, 15,468 cycles replayed; ranked alone it took eight, 15,678)."""
        if layer_id < 0:
            v = -1 - layer_id
            vector = self.workload.vectors[v]
            if vector.foldable and self.workload.spec.inference:
                return None  # folded into the weights of the layer before it
            if v in self.reads_speculated and not (phase == BP
                                                   and hw.speculated_norm_reads_every):
                if self.reads_speculated[v] is None:
                    self.reads_speculated[v] = written_stats(self.layer(vector.after), FF, hw)
                vector = replace(vector, in_stats=self.reads_speculated[v] or vector.in_stats)
            # ranked between its neighbours: a WG or update before it, which it does not
            # wait for, and the phase after it, which waits for it
            before = overlaps.table if overlaps is not None else empty_table(0)
            after = self.following_tiles(layer_id, phase) if follows is None else follows
            hw = replace(hw, overlap=Overlap.around(before, after, hw, after_waits=True))
            # The channels of the sum that the writer's BP never tiled (no MACs there:
            # channel compaction) hold the other branch's gradient alone: written here.
            rest = self._sum_rest.get(vector.sum_writer, 0) if phase == BP else 0
            table = vector_tiles(vector, layer_id, phase, hw, self.stored[v], self.stored_dy[v],
                                 input_resident, self.stored_second[v], extra_result=rest)
            if not len(table):
                return None
            result = result_bytes(vector, phase, hw, self.stored[v], self.stored_dy[v])
            elems = (vector.in_elems, vector.out_elems)
            return PhaseWork(vector.name, layer_id, phase, table, output_bytes=result,
                             input_elems=elems[phase != FF], output_elems=elems[phase == FF],
                             input_resident=input_resident, buffer_bytes=hw.buffer_bytes,
                             output_written=hw.output_to_dram)
        layer = self.layer(layer_id)
        circulant = self.circulant if layer.name in self.pruned else 0
        if phase == WU:
            input_resident = input_resident or hw.fused_update
            table = update_tiles(layer, layer_id, hw, self.workload.spec.weight_update,
                                 self._dw_bytes[layer_id], self._kept_gradients_only(layer),
                                 circulant, input_resident,
                                 ranked=(self.workload.pruning.method == "dynamic"
                                         and layer.name in self.pruned))
            if not len(table):
                return None
            return PhaseWork(layer.name, layer_id, phase, table,
                             output_elems=layer.w_nz.numel(), input_resident=input_resident,
                             buffer_bytes=hw.buffer_bytes,
                             output_written=hw.output_to_dram)

        def too_large() -> ConfigError:
            self._counted.clear()  # what the message is built with needs some room
            outputs = {FF: layer.dy_nz, BP: layer.x_nz, WG: layer.w_nz}[phase].numel()
            spec = self.workload.spec
            return ConfigError(
                f"mapping layer {layer.name} {PHASES[phase]} ({outputs:,} outputs, each "
                f"counted in several maps) does not fit in this machine's memory: "
                f"{spec.model} at batch {spec.batch}; a smaller batch or input shape maps "
                "in less", key="workload.batch")

        if phase == WG and hw.fused_update and updated(self.workload, layer_id):
            hw = replace(hw, output_to_dram=False)  # its update takes dW off its stream
        if (layer_id, phase) == self.order[0]:  # no phase before it to read weights under
            hw = replace(hw, first_phase=True)
        if phase == WG and overlaps is not None:
            after = (self.next_tiles(layer_id) if follows is None
                     or updated(self.workload, layer_id) else follows)
            hw = replace(hw, overlap=Overlap.around(overlaps.table, after, hw))
        with out_of_memory_as(too_large):
            table, totals = tile_phase(
                layer, layer_id, phase, hw, self.policy,
                pruned_grads_unused=self.workload.pruned_grads_unused,
                circulant_block=circulant,
                input_resident=input_resident,
                counted=(_recent(self._counted, (layer_id, phase), dict, size=4)
                         if hw.inter_layer_reuse else None))  # only reuse re-maps
        if phase == WG:
            self._dw_bytes[layer_id] = totals["output_bytes"]
        if phase == BP and self.writes_fork_sum and layer.dx_sum_nz is not None:
            self._sum_rest[layer.name] = max(0, written_bytes(layer, BP, hw)
                                             - totals["output_bytes"])
        x, dy = layer.x_nz.numel(), layer.dy_nz.numel()
        elems = {FF: (x, dy), BP: (dy, x), WG: (0, layer.w_nz.numel())}[phase]
        return PhaseWork(layer.name, layer_id, phase, table, **totals, input_elems=elems[0],
                         output_elems=elems[1], input_resident=input_resident,
                         buffer_bytes=hw.buffer_bytes, output_written=hw.output_to_dram,
                         activation_gradient=phase == WG and not layer.weight_is_parameter)

    def _kept_gradients_only(self, layer: LayerCapture) -> bool:
        """Whether WG computed the kept weights' gradients only (tiling's rule for WG)."""
        return (self.policy.pruned_weight_gradients and self.workload.pruned_grads_unused
                and layer.weight_is_parameter)


def _recent(cache: dict, key: object, make: Callable[[], object], size: int = 2) -> object:
    """cache[key], made if missing; the cache keeps the `size` entries made last."""
    if key not in cache:
        if len(cache) == size:
            del cache[next(iter(cache))]
        cache[key] = make()
    return cache[key]


def map_workload(workload: Workload, hw: HardwareView) -> list[PhaseWork]:
    """Every phase of the training iteration (or inference) as event rows, in the order the
    processor runs them, with the inter-layer reuse decisions made. Counting is exact, so it
    runs on every thread torch may use (`mappings.threads`)."""
    with counting_threads():
        return _map_phases(workload, hw)


def _map_phases(workload: Workload, hw: HardwareView) -> list[PhaseWork]:
    mapper = PhaseMapper(workload, hw)
    work: list[PhaseWork] = []
    producer, held = -1, 0  # the last FF/BP phase's index, and its input's bytes kept on chip
    maker = -1              # the FF/BP phase before it, which made that input
    forked = False          # whether a fork hands the producer's output to a second branch
    # whether each layer from the producer's to this one (in forward order) read the output
    # of the one before it: FF's input is then the producer's output, BP's dY its dX
    chained = True
    for layer_id, phase in mapper.order:
        if mapper.kind(layer_id) == "fork":
            forked = True
        if phase == FF:  # (the chain runs from the producer on to this one)
            chained = chained and mapper.reads_previous(layer_id)
        w = mapper.first(layer_id, phase, bp_before(work, layer_id, phase)
                         or unwaited_before(work, layer_id))
        if w is None:
            if phase == BP:  # (in BP it runs from the producer back to the one after this)
                chained = chained and mapper.reads_previous(layer_id)
            continue
        work.append(w)
        if not hw.inter_layer_reuse:
            continue
        if phase == WG:
            if held and (work[producer].layer, work[producer].phase) == (layer_id, BP):
                wg_reads_kept_gradient(work, maker, mapper, hw, held)
            continue
        if phase == WU:  # nothing later in the iteration reads the weights it writes
            update_reads_kept_gradient(work, mapper, hw)
            continue
        # Only an inference's output may stay unwritten here: in training BP and WG read it
        # (a gradient both read on chip goes unwritten in wg_reads_kept_gradient).
        written = not workload.spec.inference or forked
        held = (keep_output_on_chip(work, producer, mapper, hw, held, written, maker)
                if producer >= 0 and chained else 0)
        maker, producer, forked = producer, len(work) - 1, False
        chained = phase == FF or mapper.reads_previous(layer_id)
    return work


def keep_output_on_chip(work: list[PhaseWork], j: int, mapper: PhaseMapper, hw: HardwareView,
                        held: int, written: bool = True, maker: int = -1) -> int:
    """Inter-layer reuse: whether work[j]'s output stays in the global buffer for the last
    phase of `work`, the next FF or BP; if so, both (and the WGs between) are mapped again
    in place. Returns the bytes that phase's input now keeps in the buffer (0: none).

    FF's Y is the next FF's X and BP's dX the next BP's dY, when each layer from the one to
    the other read the output of the layer before it (`LayerCapture.reads_previous`, from
    the capture's tensors: q, k and v of an attention all read one norm's output, sizes
    alike) and their sizes match (the WGs between read neither). A residual add keeps the
    operand written last (its body's output), a fork the gradient written last (its
    body's); the other branch's tensor, written earlier, is read from DRAM, as is a
    shortcut conv's X.
    While the output is kept, it takes its bytes out of the buffer: the producer (less its
    own input, `held`, if that was kept too), the WGs between and the consumer are tiled
    in what is left, half of it a tile; a plan whose tiles still fit is kept, but a WG's
    just before the consumer, which is ranked again between its BP and the consumer's new
    tiles (it had been ranked against the consumer's first mapping, `next_tiles`, and
    kept a plan that lost to another against the tiles the run then had: LeNet-5 at batch
    32 on hppu.yaml, 0.6% slower). The consumer reads its input from the buffer, not DRAM,
    and its tiles need no room for it. The output is still written to DRAM (BP and WG read
    it later) unless `written` is False (an inference, no fork after it) and the consumer
    reads it itself (not a fused residual, whose sum the producer's stream writes for later
    readers); when the producer is such a fused add, the stream it was fused into,
    work[maker], wrote the sum and writes it no more. It is kept when the mapper's own
    estimate (`_span_key`, on `mapping.objective`) of the phases involved says so: smaller
    tiles may read the weights more often than the kept input saves."""
    k = len(work) - 1
    producer, consumer = work[j], work[k]
    kept = producer.output_bytes
    capacity = 2 * hw.buffer_bytes
    budget = (capacity - held - kept) // 2
    if (consumer.phase != producer.phase or kept <= 0 or budget <= 0
            or consumer.input_elems != producer.output_elems):
        return 0
    def fused_add(w: PhaseWork) -> bool:
        return hw.fused_residual and mapper.kind(w.layer) == "add"
    unwritten = not written and not fused_add(consumer)
    first = maker if unwritten and maker >= 0 and fused_add(producer) else j

    def remapped(w: PhaseWork, drop_write: bool, before: list[PhaseWork | None],
                 follows: np.ndarray | None) -> PhaseWork | None:
        # (a WG's dW kept for its update shares the buffer with the output kept here)
        room = min(budget, (2 * w.buffer_bytes - kept) // 2)
        if room <= 0:
            return None
        overlaps = (bp_before(before, w.layer, w.phase)
                    or unwaited_before(before or work[:j], w.layer))
        if (not w.on_vector_unit and w.tile_buffer_bytes <= room and not drop_write
                and (follows is None or overlaps is None)):
            return w  # its plan still fits (and is not ranked again)
        return mapper(w.layer, w.phase,
                      replace(hw, buffer_bytes=room,
                              output_to_dram=w.output_written and not drop_write),
                      w.input_resident, overlaps, follows)
    try:
        # the consumer first: the WG just before it is ranked again against its new tiles
        last = mapper(consumer.layer, consumer.phase,
                      replace(hw, buffer_bytes=(capacity - kept) // 2), True,
                      unwaited_before(work[:k], consumer.layer))
        span: list[PhaseWork | None] = []
        for i, w in enumerate(work[j:k]):
            follows = last.table if i == k - j - 1 and last is not None else None
            span.append(remapped(w, unwritten and i == 0, span, follows))
        span.append(last)
        if first != j:  # the sum's stream
            span[:0] = [_unwritten(work[first], mapper, hw), *work[first + 1:j]]
    except ConfigError:  # a phase's smallest tile no longer fits
        return 0
    return kept if _replace_if_better(work, first, span, hw) else 0


def wg_reads_kept_gradient(work: list[PhaseWork], maker: int, mapper: PhaseMapper,
                           hw: HardwareView, held: int) -> None:
    """Inter-layer reuse beyond the next phase: a layer's BP read its dY (`held` bytes) from
    the global buffer, where work[maker] left it; whether its WG, the last phase of `work`,
    reads it there too instead of from DRAM. The gradient then stays through the WG, which
    is tiled in what is left. When nothing else reads it (no residual add passed it to a
    second branch), work[maker] need not write it to DRAM either: BP and WG were its only
    readers. Both are mapped again in place when the mapper's estimate (`_span_key`) of the
    phases from work[maker] on says so."""
    k = len(work) - 1
    wg = work[k]
    budget = (2 * hw.buffer_bytes - held) // 2
    try:
        span = [*work[maker:k], mapper(wg.layer, WG, replace(hw, buffer_bytes=budget), True,
                                       bp_before(work[:k], wg.layer, WG))]
        if not _gradient_shared(mapper.workload, wg.layer, hw):
            span[0] = _unwritten(work[maker], mapper, hw)
    except ConfigError:  # the WG's smallest tile no longer fits
        return
    _replace_if_better(work, maker, span, hw)


def update_reads_kept_gradient(work: list[PhaseWork], mapper: PhaseMapper,
                               hw: HardwareView) -> None:
    """Inter-layer reuse of a weight gradient: whether the layer's WG, work[-2], leaves dW
    in the global buffer for its weight update, the last phase of `work`, instead of
    writing it to DRAM for the update to read back (nothing else reads dW). The gradient
    takes its bytes out of the buffer from the WG's first tile to the update's last: the
    WG is tiled in what is left of its budget (which a dY it kept may already have
    shrunk), the update in what is left of the whole buffer. Both are mapped again in
    place when the mapper's estimate (`_span_key`) of the two says so. (A WG that writes
    no dW, its update fused into its stream, has none to keep.)"""
    k = len(work) - 1
    wg, update = work[k - 1], work[k]
    if (wg.layer, wg.phase) != (update.layer, WG) or not wg.output_written:
        return  # (its WG had no tiles, or writes no dW)
    kept = wg.output_bytes
    budget = (2 * wg.buffer_bytes - kept) // 2
    if kept <= 0 or budget <= 0:
        return
    try:
        span = [mapper(wg.layer, WG, replace(hw, buffer_bytes=budget, output_to_dram=False),
                       wg.input_resident, bp_before(work[:k - 1], wg.layer, WG)),
                mapper(update.layer, WU, replace(hw, buffer_bytes=(2 * hw.buffer_bytes - kept)
                                                 // 2), True)]
    except ConfigError:  # the WG's smallest tile no longer fits
        return
    _replace_if_better(work, k - 1, span, hw)


def bp_before(work: Sequence[PhaseWork | None], layer_id: int, phase: int
              ) -> PhaseWork | None:
    """The last phase of `work` if `phase` is a WG and that is its layer's BP, whose tiles
    its first ones overlap (a WG does not wait for its BP: `phase_waits`)."""
    last = work[-1] if work else None
    if phase != WG or last is None or (last.layer, last.phase) != (layer_id, BP):
        return None
    return last


def unwaited_before(work: Sequence[PhaseWork | None], layer_id: int) -> PhaseWork | None:
    """The last phase of `work` if layer `layer_id` is a vector layer and that phase is a WG
    or an update, which it does not wait for (`phase_waits`): its first tiles are fetched
    while that phase's last ones compute, as a WG's while its BP's do (`bp_before`)."""
    last = work[-1] if work else None
    if (layer_id >= 0 or last is None or last.phase not in (WG, WU)
            or last.activation_gradient):
        return None
    return last


def _unwritten(w: PhaseWork, mapper: PhaseMapper, hw: HardwareView) -> PhaseWork | None:
    """Phase `w` mapped again under the budget it had, its result no longer written to DRAM
    (every later reader finds it on chip)."""
    return mapper(w.layer, w.phase, replace(hw, buffer_bytes=w.buffer_bytes,
                                            output_to_dram=False), w.input_resident)


def _replace_if_better(work: list[PhaseWork], first: int, span: list[PhaseWork | None],
                       hw: HardwareView) -> bool:
    """Put `span` in place of work[first:] if every phase of it has tiles and the mapper's
    estimate (`_span_key`, on `mapping.objective`) of it is lower; whether it did."""
    if None in span or _span_key(span, hw) >= _span_key(work[first:], hw):
        return False
    work[first:] = span
    return True


def _span_key(span: list[PhaseWork], hw: HardwareView) -> tuple:
    """`plan_key` of a run of layer-phases as the accelerator runs them: their tiles through
    one pipeline, each phase's first tile fetched once the phases it waits for
    (`phase_waits`) are written back, that is every tile before theirs (write-backs go in
    order)."""
    sizes = [len(w.table) for w in span]
    ends = np.cumsum(sizes) - 1          # each phase's last tile (or the one before it)
    gates = np.full(int(sum(sizes)), -1)
    for p, k in enumerate(phase_waits(span)):
        if sizes[p] and k >= 0:
            gates[ends[p] - sizes[p] + 1] = ends[k]
    return plan_key(concat_tables([w.table for w in span]), hw, 0, gates)


def _gradient_shared(workload: Workload, layer_id: int, hw: HardwareView) -> bool:
    """Whether a layer's dY is also another branch's gradient: its output goes straight (or
    through a fused ReLU, which masks the gradient as it is read) into a residual add, whose
    BP hands the same gradient to both operands."""
    following = [v for v in workload.vectors if v.after == layer_id
                 and not (v.kind == "relu" and hw.fused_relu)]
    return bool(following) and following[0].kind == "add"


def phase_waits(work: list[PhaseWork]) -> list[int]:
    """For each layer-phase, the latest earlier one that must be written back before its
    first tile is fetched (-1: none); phases finish in order, so that one's end means every
    earlier one's.

    Nothing in one training iteration reads a weight gradient but the layer's own weight
    update, which waits for its WG alone; nothing reads the weights an update writes. So no
    other phase waits for a WG or a WU; and a layer's WG reads X and dY, not the dX its BP
    makes, so it does not wait for that BP either. A MatMul's WG is the exception: it makes
    the gradient of its second operand, an activation, which the BP (and WG) of the layer
    that made it reads, so later phases wait for it (`activation_gradient`). Every other
    phase waits for all the phases before it: its input (FF's X, BP's dY) is the latest
    output written, and which earlier phase also fed it (a residual branch) is not
    tracked, so waiting for all of them is the safe rule."""
    waits = []
    for j, w in enumerate(work):
        k = j - 1
        if w.phase == WU:  # its layer's WG
            while k >= 0 and (work[k].layer, work[k].phase) != (w.layer, WG):
                k -= 1
            waits.append(k)
            continue
        while k >= 0 and ((work[k].phase in (WG, WU) and not work[k].activation_gradient)
                          or (w.phase == WG and work[k].phase == BP
                              and work[k].layer == w.layer)):
            k -= 1
        waits.append(k)
    return waits
