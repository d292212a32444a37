"""Vector layers (batch norm, activations, pooling, residual sums) as tiles: data passes, ops.

They have no MACs, but in training they move data: a plain batch norm reads its input twice
in FF (statistics, then normalization) and its input and output gradient twice in BP (the
sums for dgamma and dbeta, then dX), unless the data fits on chip, when the second pass reads
the global buffer. Trainer's decoupled BN unit (`fused_batchnorm`) gathers the statistics as
the producing layer writes its outputs, so each phase makes one pass. At inference a batch
norm right after a conv/linear layer uses its running statistics, a per-channel scale and
shift that deployment folds into that layer's weights: it has no tile (`foldable`). A ReLU
is usually fused into the layer that produces its input (`fused_relu`): its comparison
happens on the output stream and it costs no tile of its own, and the producer writes the
ReLU's output.
Activations and gradients take their bytes in the activation format, from their captured
non-zeros, as the conv/linear layers' operands do. A fused ReLU's BP (the mask) is applied
on the stream where its consumer reads the gradient, so the layer before it reads the
gradient as it was written: masked only when the layer that wrote it is a conv/linear layer
that skips ReLU-masked gradients (`skip_relu_masked_gradients`); a pooling writes it
unmasked. The mask itself, a bit an element, is read by no tile (a known omission, some 1/16
of a dense fp16 dY's bytes): an unfused ReLU's BP reads it. A conv/linear layer right before
a fused ReLU (no batch norm between: LeNet, VGG) reads its dY at the bytes of the masked
gradient, the one it computes with, though a writer that does not mask wrote the unmasked
one (a known omission: the capture keeps the masked map alone; a compressed activation
format only, its MACs exact).

A residual connection is two sums. Where the branches join (`add`), FF sums the operands
(with a fused ReLU after it, the ReLU's output is what is stored); its BP is free, since each
branch reads the same dY. Where the block's input forks into the branches (`fork`), FF is
free (both read the same X), and BP sums the two branches' gradients, the block input's dX.
With `fused_residual`, the sum happens on the output stream of the phase that writes one
operand last (the body's batch norm in FF, its first conv's BP): that phase reads the other
operand as it writes and writes the sum instead of its own output, so the residual costs one
read. Without, it is a pass of its own: both operands read, the sum written.

A layer norm (`nn.LayerNorm`) computes as a batch norm does, over each token's features
instead of each channel's batch: a token is a row, which fits on chip, as a softmax's row
does, so it makes one pass each way whatever the tensor's size (it had been taken as a
batch norm, two passes once the whole tensor outgrew the buffer).

Operations per element (stated assumptions, counted as fused multiply-adds on the vector
unit): batch norm and layer norm FF 4 (sum, sum of squares, scale, shift), BP 7 (two sums,
then dX); activation 1 each way; pooling 1 per input element each way; an add's FF and a
fork's BP 1 per output element. Max pooling's BP and the ReLU's BP read one bit an
element (the argmax / sign map) besides dY; average pooling's BP spreads dY evenly over
each window and reads dY alone.

A GELU (transformers' activation) is smooth: its BP multiplies dY by GELU'(X), so it reads
its input X (16 bits an element, not a ReLU's sign bit) and it is not fused into the layer
before (that layer would have to write X beside the GELU's output); it had been taken as a
ReLU. The unit computes it as I-BERT's i-GELU does (Kim et al., ICML 2021, sec. 3.5):
GELU(x) = x (1 + L(x / sqrt 2)) / 2, L(u) = sgn(u) (a (min(|u|, -b) + b)^2 + 1). FF is 8 an
element: x / sqrt 2 (a multiply), |u| clipped (a compare), the polynomial (an add, a
multiply, a multiply-add), its sign (a multiply), 1 + L (an add), times x (a multiply; the
halving a shift, free). BP is 13: u, its clip and L(u) again (6), 1 + L (1), L'(u) = 2a (|u|
+ b) within the clip (an add and a multiply), x L'(u) / (2 sqrt 2) (two multiplies), the sum
(an add) and the product with dY (a multiply).

A softmax (attention's, over a row of scores: the sequence, which fits on chip) makes one
pass each way. FF reads X and writes Y; BP reads dY and Y (its gradient needs its output,
not its input) and writes dX = Y (dY - sum(dY Y)). The unit has no exp: it computes one as
I-BERT's i-exp does (Kim et al., ICML 2021, sec. 3.4): z = floor(-x / ln2) (a multiply, its
floor taken on the output), p = x + z ln2 (a multiply-add), L(p) = a (p + b)^2 + c (an add, a
multiply, a multiply-add), then L(p) shifted right by z (taken as free, a shift, as the
floor). FF is 9 an element: the running max (a compare), the max subtracted, the exp (5), the
row sum, and the multiply by the row's reciprocal (one divide a row: a row's length is the
sequence, so negligible, not counted). BP is 3: the row sum of dY Y (a multiply-add), the
subtraction, the multiply by Y. A scaled softmax (`VectorCapture.scaled`: 1/sqrt(d)) adds
the scale's multiply each way (10 and 4).
"""

from __future__ import annotations

import numpy as np

from desim.events import empty_table
from mappings.capture import VectorCapture
from mappings.counting import BP, FF
from mappings.formats import BlockStats, operand_bytes
from mappings.pipeline import plan_key
from mappings.target import HardwareView

OPS_PER_ELEMENT = {("batchnorm", FF): 4, ("batchnorm", BP): 7, ("layernorm", FF): 4,
                   ("layernorm", BP): 7, ("relu", FF): 1, ("relu", BP): 1,
                   ("gelu", FF): 8, ("gelu", BP): 13,
                   ("pool", FF): 1, ("pool", BP): 1, ("avgpool", FF): 1, ("avgpool", BP): 1,
                   ("add", FF): 1, ("add", BP): 0,
                   ("fork", FF): 0, ("fork", BP): 1, ("softmax", FF): 9, ("softmax", BP): 3}


def vector_traffic(v: VectorCapture, phase: int, hw: HardwareView,
                   stored_out: BlockStats | None = None, stored_dy: BlockStats | None = None,
                   input_resident: bool = False, stored_second: BlockStats | None = None
                   ) -> tuple[int, int, int]:
    """(DRAM bytes read, DRAM bytes written, vector ops) of one phase of a vector layer.

    FF reads X and writes Y; BP reads dY (and X again in a batch or layer norm and a GELU,
    Y in a softmax) and writes dX. Each takes its bytes in the activation format, from the
    captured statistics (dense when none were captured); `stored_out` and `stored_dy`
    replace Y's and dY's when a fused ReLU changes what is stored (`stored_outputs`,
    `stored_gradients`), and `stored_second` a fork's second gradient
    (`stored_second_gradients`). `input_resident`:
    the phase before left FF's X (BP's dY) in the global buffer, so neither pass reads it
    from DRAM; for an add (a fork), the operand written last."""
    eb = hw.element_bytes
    if v.kind in ("add", "fork"):
        return _residual_traffic(v, phase, hw, stored_out, input_resident, stored_second)
    norm = v.kind in ("batchnorm", "layernorm")
    reads_x = phase == FF or norm or v.kind == "gelu"  # (GELU's derivative takes X)
    x = _in_format(v.in_stats, v.in_elems * eb, hw) if reads_x else 0
    ops = (OPS_PER_ELEMENT[(v.kind, phase)] + v.scaled) * v.in_elems
    needs_y = phase == FF or v.kind == "softmax"   # FF writes it, a softmax's BP reads it
    y = _in_format(stored_out or v.out_stats, v.out_elems * eb, hw) if needs_y else 0
    if phase == FF:
        operands = 0 if input_resident else x
    else:
        dy = _in_format(stored_dy or v.dy_stats, v.out_elems * eb, hw)
        dx = _in_format(v.dx_stats, v.in_elems * eb, hw)
        operands = x + (0 if input_resident else dy)
    # A batch norm's second pass reads again what the first read from DRAM, unless that fits
    # the buffer. A kept input is not counted: a phase that reads one is mapped under a
    # budget with the kept bytes already taken out (mappings.mapper's reuse).
    if norm:  # (a layer norm's statistics are a token's, a row on chip: one pass each way)
        one_pass = hw.fused_batchnorm or v.kind == "layernorm" or operands <= hw.buffer_bytes
        return operands * (1 if one_pass else 2), (y if phase == FF else dx), ops
    if phase == FF:
        return operands, y, ops
    if v.kind == "softmax":  # a row on chip: one pass over dY and Y
        return operands + y, dx, ops
    if v.kind in ("avgpool", "gelu"):  # dY spread over each window; GELU's X read above
        return operands, dx, ops
    return operands + -(-v.in_elems // 8), dx, ops    # dY plus a sign/argmax bit each


def _residual_operands(v: VectorCapture, phase: int, stored_out: BlockStats | None
                       ) -> tuple[BlockStats | None, int, BlockStats | None, int] | None:
    """An add's FF or a fork's BP: (the operand written last, elements of each operand, the
    sum as stored, its elements); None for their other phase, which is free."""
    if (phase == FF) != (v.kind == "add"):
        return None
    if v.kind == "add":
        return v.in_stats, v.in_elems, stored_out or v.out_stats, v.out_elems
    return v.dy_stats, v.out_elems, v.dx_stats, v.in_elems


def _residual_traffic(v: VectorCapture, phase: int, hw: HardwareView,
                      stored_out: BlockStats | None, input_resident: bool,
                      stored_second: BlockStats | None = None) -> tuple[int, int, int]:
    """An add's FF and a fork's BP: two operands in, their sum out (fused: the other operand
    in only); their other phase is free."""
    operands = _residual_operands(v, phase, stored_out)
    if operands is None:
        return 0, 0, 0
    last, n_in, out, n_out = operands
    eb = hw.element_bytes
    ops = OPS_PER_ELEMENT[(v.kind, phase)] * n_out
    other = _in_format(stored_second or v.second_stats, n_in * eb, hw)
    if hw.fused_residual:  # the producer's stream reads the other operand, writes the sum
        return other, 0, ops
    last_bytes = 0 if input_resident else _in_format(last, n_in * eb, hw)
    return other + last_bytes, _in_format(out, n_out * eb, hw), ops


def result_bytes(v: VectorCapture, phase: int, hw: HardwareView,
                 stored_out: BlockStats | None = None, stored_dy: BlockStats | None = None
                 ) -> int:
    """Bytes of the tensor a vector layer-phase produces, as stored: what it writes, or for a
    fused residual sum, what the stream it is fused into writes in its place."""
    if v.kind in ("add", "fork"):
        operands = _residual_operands(v, phase, stored_out)
        if operands is None:
            return 0
        _, _, out, n_out = operands
        return _in_format(out, n_out * hw.element_bytes, hw)
    return vector_traffic(v, phase, hw, stored_out, stored_dy)[1]


def _in_format(stats: BlockStats | None, dense_bytes: int, hw: HardwareView) -> int:
    if stats is None or hw.activation_format == "dense":
        return dense_bytes
    return int(operand_bytes(hw.activation_format, stats, hw.element_bytes)[0])


def stored_outputs(vectors: list[VectorCapture], hw: HardwareView) -> list[BlockStats | None]:
    """What each vector layer writes in FF: with `fused_relu`, a layer whose output goes
    straight into a ReLU (the next vector layer, after the same conv/linear layer, of the
    output's size) writes the ReLU's output; with `fused_residual`, a layer whose output is the
    operand an add takes last (the next vector layer, after the same conv/linear layer)
    writes what the add stores."""
    stored = [vectors[i + 1].out_stats if _fused_relu_follows(vectors, i, hw) else v.out_stats
              for i, v in enumerate(vectors)]
    for i in range(len(vectors) - 1):
        if hw.fused_residual and _add_follows(vectors, i):
            stored[i] = stored[i + 1]
    return stored


def stored_gradients(vectors: list[VectorCapture], hw: HardwareView
                     ) -> list[BlockStats | None]:
    """The gradient dY each vector layer reads in BP: with a fused ReLU after it, the one the
    ReLU received (unmasked: the mask is applied as it is read), unless the layer that wrote
    it already masked it (`skip_relu_masked_gradients`). An add passes its gradient on
    unchanged to both operands, so a layer whose dY is an add's (`dy_from`: either branch's
    last layer) reads what the add's ReLU received."""
    at = {v.name: i for i, v in enumerate(vectors)}
    return [_stored_gradient(vectors, at[v.dy_from] if v.dy_from else i, v.dy_stats, hw)
            for i, v in enumerate(vectors)]


def stored_second_gradients(vectors: list[VectorCapture], hw: HardwareView
                            ) -> list[BlockStats | None]:
    """A fork's second gradient as stored: an identity shortcut's is the add's
    (`second_from`), stored as the add's ReLU received it; None where nothing differs."""
    at = {v.name: i for i, v in enumerate(vectors)}
    return [_stored_gradient(vectors, at[v.second_from], v.second_stats, hw)
            if v.kind == "fork" and v.second_from else None for v in vectors]


def _stored_gradient(vectors: list[VectorCapture], j: int, own: BlockStats | None,
                     hw: HardwareView) -> BlockStats | None:
    """The gradient of layer j's output as stored: the one a fused ReLU after it received,
    unless masked as written (`_written_masked`); else `own` (the gradient as the reader
    received it)."""
    if _fused_relu_follows(vectors, j, hw) and not _written_masked(vectors, j + 1, hw):
        return vectors[j + 1].dy_stats
    return own


def _written_masked(vectors: list[VectorCapture], r: int, hw: HardwareView) -> bool:
    """Whether the gradient the ReLU `vectors[r]` receives was written ReLU-masked: by a
    conv/linear layer's BP that skips ReLU-masked gradients (`skip_relu_masked_gradients`),
    as is a fused fork's sum, which the block's first conv writes. A vector layer after the
    ReLU (a pooling, a fork not fused) writes it unmasked: it had been read as masked, fewer
    bytes than were written."""
    if not hw.skip_relu_masked_gradients:
        return False
    nxt = _next(vectors, r)
    if nxt is None or nxt.after != vectors[r].after:
        return True   # a conv/linear layer takes the ReLU's output
    return nxt.kind == "fork" and hw.fused_residual and nxt.sum_writer is not None


def _next(vectors: list[VectorCapture], i: int) -> VectorCapture | None:
    """The vector layer after layer i in forward order; None after the last."""
    return vectors[i + 1] if i + 1 < len(vectors) else None


def _add_follows(vectors: list[VectorCapture], i: int) -> bool:
    """Whether layer i's output is the operand an add takes last (the next vector layer is an
    add, after the same conv/linear layer)."""
    nxt = _next(vectors, i)
    return nxt is not None and nxt.kind == "add" and nxt.after == vectors[i].after


def _fused_relu_follows(vectors: list[VectorCapture], i: int, hw: HardwareView) -> bool:
    """Whether layer i's output goes straight into a fused ReLU (the next vector layer,
    after the same conv/linear layer, of the output's size)."""
    nxt = _next(vectors, i)
    return (hw.fused_relu and nxt is not None and nxt.kind == "relu" and vectors[i].kind != "fork"
            and nxt.after == vectors[i].after and nxt.in_elems == vectors[i].out_elems)


def left_out_without_unit(vectors: list[VectorCapture], inference: bool) -> int:
    """How many of the model's vector layers a design without a vector unit leaves out (what
    `desim run` warns of). Such a design applies a ReLU on the output stream of the layer
    before it (`desim.hardware_view` sets `fused_relu`): a ReLU right after a conv or linear
    layer is simulated, on the PE array's output; one after a batch norm, pooling or add is
    left out with that layer. At inference a batch norm folded into the weights before it
    is not left out, nor a fork (its FF is free)."""
    left_out, after, on_pe_output = 0, None, False
    for v in vectors:  # in forward order; `after`: the conv/linear layer they follow
        if v.after != after:  # the first vector layer after that conv/linear layer
            after, on_pe_output = v.after, v.after >= 0
        if (v.kind == "relu" and on_pe_output) or (inference and (v.foldable
                                                                  or v.kind == "fork")):
            continue  # the stream stays the PE array's output
        left_out += 1
        on_pe_output = False
    return left_out


def vector_layers_not_simulated(vectors: list[VectorCapture], inference: bool,
                                vector_unit: bool) -> int:
    """How many of the model's vector layers a run leaves out (what `desim run` warns of):
    with a vector unit, none (it runs every kind); without, all but the ReLUs on the PE
    array's output (`left_out_without_unit`)."""
    return 0 if vector_unit else left_out_without_unit(vectors, inference)


def vector_tiles(v: VectorCapture, layer_id: int, phase: int, hw: HardwareView,
                 stored_out: BlockStats | None = None, stored_dy: BlockStats | None = None,
                 input_resident: bool = False, stored_second: BlockStats | None = None,
                 extra_result: int = 0) -> np.ndarray:
    """The layer-phase cut into tiles whose data fits the tile's share of the buffer (its
    result not written when `hw.output_to_dram` is off: kept on chip for later phases).
    `extra_result`: bytes of result made beside the layer's own, counted in the tiles' room
    (a fork's BP writes the sum's channels its writer never tiled: `mapper.PhaseMapper`;
    added to the tiles after they were cut, they had held up to 1.24x their half)."""
    if hw.vector_lanes == 0 or (v.kind == "relu" and hw.fused_relu):
        return empty_table(0)
    read, result, ops = vector_traffic(v, phase, hw, stored_out, stored_dy, input_resident,
                                       stored_second)
    # Out of the buffer what the unit reads: a kept input too, which DRAM did not send.
    operands = (vector_traffic(v, phase, hw, stored_out, stored_dy, False, stored_second)[0]
                if input_resident else read)
    held = v.kind == "batchnorm" and not hw.fused_batchnorm and operands <= hw.buffer_bytes
    if held:
        operands *= 2  # it fits: DRAM sends it once, and the second pass reads the buffer
        # again (it had been counted once, as the fused unit's one pass)
    return pass_tiles(layer_id, phase, hw, read, operands, ops, result + extra_result,
                      split=not held)


def pass_tiles(layer_id: int, phase: int, hw: HardwareView, read: int, operands: int, ops: int,
               result: int, split: bool = True) -> np.ndarray:
    """A vector pass in tiles whose data fits the tile's share of the buffer: `read` bytes
    from DRAM into the buffer, `operands` out of it to the unit, `ops` operations, `result`
    bytes made in the buffer and written back (unless `hw.output_to_dram` is off: kept on
    chip, read by later phases only).

    How many tiles is chosen as a conv/linear layer-phase's plan is (`planner.tile_phase`):
    by the design's objective on the plan estimate (`pipeline.plan_key`), between the
    neighbours' tiles the mapper gives (`hw.overlap`: `mapper.PhaseMapper`). The fewest tiles
    that fit overlap least: one tile fetches, computes and writes back one stage after
    another, so a larger buffer (fewer, larger tiles) had made a vector pass slower (LeNet-5's
    first pooling at batch 2 on a 128 KiB buffer: 1,952 cycles as one tile, 1,100 as four).
    More tiles overlap their stages behind the busiest one, but each pays the stages' fixed
    latencies. So the count doubles from the fewest that fit while the estimate improves: it
    is a sum of a fill and drain that shrinks with the count and latencies that grow with it,
    so the first doubling that does not improve is past its best. Nor is a tile made smaller
    than one operation per lane (`hw.vector_lanes`): it would take the unit's cycle anyway
    (the bound that stops a view with no latencies). The bytes and operations are the same
    whatever the count: only their split changes. `split` False: the fewest tiles, the data
    held together (a plain batch norm read once from DRAM for both its passes: split
    further, a tile's half was let go, its result written, before the last tiles' inputs
    came in, and the second pass read what was no longer there; an audit found a run 10%
    too fast)."""
    write = result if hw.output_to_dram else 0
    if read == result == ops == 0:
        return empty_table(0)
    fewest = max(1, -(-(read + write) // hw.buffer_bytes))
    most = max(fewest, -(-ops // max(hw.vector_lanes, 1))) if split else fewest
    best, best_key, n = None, None, fewest
    while n <= most:
        table = _pass_table(layer_id, phase, hw, read, operands, ops, result, n)
        key = plan_key(table, hw, n)
        if best_key is not None and key >= best_key:
            break
        best, best_key, n = table, key, 2 * n
    return best


def _pass_table(layer_id: int, phase: int, hw: HardwareView, read: int, operands: int,
                ops: int, result: int, n: int) -> np.ndarray:
    """The pass (`pass_tiles`) in `n` near-equal tiles."""
    table = empty_table(n)
    table["layer"], table["phase"] = layer_id, phase
    table["dram_read_bytes"] = table["glb_write_bytes"] = table["held_bytes"] = _split(read, n)
    table["glb_read_bytes"] = _split(operands, n)
    table["vector_ops"] = _split(ops, n)
    return with_result(table, result, hw)


def with_result(table: np.ndarray, nbytes: int, hw: HardwareView) -> np.ndarray:
    """A vector layer-phase's tiles with `nbytes` more of result, made in the buffer and
    written back (unless `hw.output_to_dram` is off), shared over its tiles. (The
    write-back's read of the buffer is the accelerator's to count, as for any tile: it
    reads out what a tile writes to DRAM.)"""
    if nbytes <= 0:
        return table
    table = table.copy()
    # the last ones one larger, the operands' split's first ones: a tile's share of the
    # whole stays within ceil(whole / tiles), so within its half of the buffer
    made = _split(nbytes, len(table))[::-1]
    table["glb_write_bytes"] += made
    if hw.output_to_dram:  # (a result kept on chip has its room outside the tiles')
        table["dram_write_bytes"] += made
        table["held_bytes"] += made
    return table


def _split(total: int, n: int) -> np.ndarray:
    """`total` in `n` near-equal integer parts (the first ones one larger)."""
    return total // n + (np.arange(n) < total % n)
