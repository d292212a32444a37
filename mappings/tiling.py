"""Tiling: one phase of one layer cut into tiles that fit the buffer, counted per tile and PE.

The dataflow (output-stationary, dealt to the clusters by channels or by rows):

- A phase's outputs are laid out (A, images, rows, L) (see `counting`). A tile takes Ka output
  channels and a block of output rows (whole images, or a run of rows of one image); the
  reduction is done inside the tile, so every output leaves the tile final, unless
  `mappings.planner` has cut the reduction into chunks (each chunk tiled here alike).
- Operands: the "channel operand" (FF: W[k]; BP: W[:, c]; WG: dY[:, k]) and the "stream
  operand" (FF: rows of X with their halo; BP: rows of dY; WG: X[:, c]).
- By channels (`HardwareView.partition`, the default): the Ka channels are dealt to the
  clusters, Ka / clusters consecutive channels each; inside a cluster, PE p takes every
  output position p, p + P, p + 2P... of its channels. A row block with fewer positions than
  the cluster has PEs (a linear layer's, one position an image) leaves the rest to other
  channels: the PEs form P // positions groups, the cluster's channels dealt to them in turn
  (`_pe_groups`). The channel operand is split among
  the clusters (unicast), the stream operand goes to every active cluster (multicast).
- By rows: the block's output rows are dealt to the clusters in runs (`cluster_blocks`), each
  cluster computing every one of the Ka channels over its run, its PEs taking the run's
  output positions in turn (in groups, the channels dealt to them in turn, where a run has
  fewer outputs than PEs). Each cluster is sent its run's window of the stream operand
  (unicast; neighbouring windows overlap by the halo), the channel operand goes to every
  active cluster (multicast). `auto` tries both: multicasting the smaller operand saves NoC
  energy, multicasting the larger saves the global buffer's port.
- A tile lasts as long as its busiest PE.
- Reuse: a block stays in the global buffer while consecutive tiles use it; a tile reads from
  DRAM only the blocks the previous tile did not hold. Outputs go to DRAM once, final.
- Tile size and loop order are chosen per layer and phase by a small search (the shape that
  fits and minimises `mapping.objective`, energy x delay by default). Channel blocks outside
  row blocks keep the channel operand stationary (weight stationary in FF and BP); the
  reverse keeps the stream operand (input stationary); `HardwareView.dataflow` may force
  one of the two.
- With channel compaction (HPPU's level-1 selector), output channels with no work are removed
  before tiling, so the remaining work is dealt out evenly; without it a pruned channel keeps
  its PE slot and that PE idles.

Every count is computed for all tiles at once with tensor reshapes; no loop over elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from desim.errors import ConfigError
from desim.events import DEALT, empty_table
from mappings.capture import LayerCapture
from mappings.circulant import fft_mac_ratio
from mappings.counting import BP, FF, WG, SkipPolicy, count_total, exact_sum
from mappings.formats import BlockStats, map_stats, operand_bytes, rle_padding
from mappings.pipeline import equal_tiles_cycles
from mappings.target import HardwareView

# The key a mapping error names when a design's global buffer is too small for a tile: the
# runner adds the file and the run (the mapper knows neither).
BUFFER_KEY = "global_buffer.capacity_kib"

T = TypeVar("T")


@dataclass
class Operand:
    """Per-channel (A) or per-row statistics of one operand, for bytes and selector scans
    (int64 arrays: numpy's small sums cost a tile search less than torch's)."""

    elems: np.ndarray        # dense elements, per unit
    nnz: np.ndarray          # non-zero elements, per unit
    lines: np.ndarray        # kernel lines, per unit (== elems when it has no line structure)
    nz_lines: np.ndarray
    line_len: int
    fmt: str
    rle_padding: np.ndarray  # run-length coding's padding entries, per unit

    def select(self, units: np.ndarray) -> Operand:
        return Operand(self.elems[units], self.nnz[units], self.lines[units],
                       self.nz_lines[units], self.line_len, self.fmt, self.rle_padding[units])

    def block_stats(self, size: int) -> BlockStats:
        """Sums over consecutive blocks of `size` units."""
        return BlockStats(_block_sums(self.elems, size), _block_sums(self.nnz, size),
                          _block_sums(self.lines, size), _block_sums(self.nz_lines, size),
                          self.line_len, _block_sums(self.rle_padding, size))


def _unit_stats(nz: torch.Tensor, line_len: int, fmt: str) -> Operand:
    """Statistics of an operand whose units are nz's first dim and lines runs of `line_len`
    consecutive elements of a unit (its last dim when line_len is that dim; a short last run
    when line_len does not divide the unit)."""
    n = nz.shape[0]
    flat = nz.reshape(n, -1)
    elems = np.full(n, flat.shape[1], np.int64)
    line_len = max(1, min(line_len, flat.shape[1]))  # a line longer than the unit: the unit
    if line_len == 1:  # every element a line: the lines with any are the non-zeros
        nnz = _count_nonzero(flat)
        lines, nz_lines = elems.copy(), nnz.copy()
    else:
        short = -flat.shape[1] % line_len
        padded = torch.cat([flat, flat.new_zeros(n, short)], 1) if short else flat
        # each line's non-zeros, whose sum is the unit's, and whose non-zero ones are the
        # lines with any (torch's `any` over a bool map's short lines took 3-4x as long)
        per_line = padded.reshape(n, -1, line_len).sum(-1, dtype=torch.int32)
        nnz = exact_sum(per_line, 1, largest=line_len).numpy()
        lines, nz_lines = np.full(n, per_line.shape[1], np.int64), _count_nonzero(per_line > 0)
    return Operand(elems, nnz, lines, nz_lines, line_len, fmt, _rle(flat, fmt).numpy())


def _count_nonzero(nz: torch.Tensor) -> np.ndarray:
    """The non-zeros of each row of a 2-D bool map, int64 (`exact_sum`'s int32 sum: numpy's
    count_nonzero per row took two to three times as long)."""
    return exact_sum(nz.bool(), 1).numpy()


def _rle(lines: torch.Tensor, fmt: str) -> torch.Tensor:
    """Run-length coding's padding entries per line of a (lines, length) non-zero map; zeros
    in every other format, which never read them (and the count takes seconds on big maps)."""
    if fmt != "rle":
        return torch.zeros(lines.shape[0], dtype=torch.int64)
    return rle_padding(lines)


def _row_rle(t: torch.Tensor, fmt: str) -> torch.Tensor:
    """Run-length padding entries per (image, row) of a (N, C, H, W) map, lines of W (zeros
    unless the format is run-length coding, the only one that reads them)."""
    n, c, h, w = t.shape
    return _rle(t.permute(0, 2, 1, 3).reshape(-1, w), fmt).reshape(n, h, c).sum(2)


@dataclass
class PhaseShape:
    """How one phase's operands map onto its output layout (A, images, rows, L)."""

    channel_operand: Operand        # per output channel a
    stream_nnz: torch.Tensor        # (images, input rows) non-zeros of the stream operand
    stream_row_elems: int           # dense elements in one input row
    stream_fmt: str
    groups: int
    stream_rle: torch.Tensor        # (images, input rows) run-length padding entries
    stream_line_len: int            # elements in one feature-map line (a row of W)


class _Window:
    """Input rows a run of output rows [r0, r1) needs."""

    def __init__(self, phase: int, layer: LayerCapture) -> None:
        self.phase, self.st, self.pad = phase, layer.stride, layer.padding
        self.reach = (layer.w_nz.shape[2] - 1) * layer.dilation
        self.rows_in = {FF: layer.x_nz.shape[2], BP: layer.dy_nz.shape[2],
                        WG: layer.w_nz.shape[1]}[phase]
        self._widest: dict[tuple[int, int], int] = {}

    def widest(self, rows: int, n_rows: int) -> int:
        """The most input rows a block of `rows` of the `n_rows` output rows needs (blocks
        from row 0 on), kept: the tile search sizes every channel block alike."""
        if (rows, n_rows) not in self._widest:
            r0 = np.arange(0, n_rows, rows)
            h0, h1 = self(r0, np.minimum(r0 + rows, n_rows))
            self._widest[rows, n_rows] = int((h1 - h0).max())
        return self._widest[rows, n_rows]

    def __call__(self, r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.phase == FF:
            h0 = r0 * self.st - self.pad
            h1 = (r1 - 1) * self.st - self.pad + self.reach + 1
        elif self.phase == BP:
            h0 = -((self.reach - self.pad - r0) // self.st)  # ceil((r0 + pad - reach) / st)
            h1 = (r1 - 1 + self.pad) // self.st + 1
        else:
            h0, h1 = r0, r1
        # (np.minimum/np.maximum: np.clip's Python wrapper costs more than the work here)
        n = self.rows_in
        return np.minimum(np.maximum(h0, 0), n), np.minimum(np.maximum(h1, 0), n)


def phase_shape(layer: LayerCapture, phase: int, hw: HardwareView) -> tuple[PhaseShape, _Window]:
    """Operand statistics of `phase` of `layer` on hardware `hw`."""
    k, cg, r, s = layer.w_nz.shape
    g = layer.groups
    act_fmt = hw.activation_format
    # FF's and BP's channel operand: W in the weight format, or a MatMul's second operand,
    # an activation, as its producer wrote it (it had been read in the weight format)
    w_fmt = hw.weight_format if layer.weight_is_parameter else act_fmt
    if phase == FF:
        units = _weight_units(layer.w_nz, FF, g)
        chan = _unit_stats(units, _channel_line(layer, FF, hw), w_fmt)
        x = layer.x_nz
        stream_nnz = exact_sum(x, (1, 3))
        row_elems = x.shape[1] * x.shape[3]
        stream_rle, line_len = _row_rle(x, act_fmt), x.shape[3]
    elif phase == BP:
        units = _weight_units(layer.w_nz, BP, g)
        chan = _unit_stats(units, _channel_line(layer, BP, hw), w_fmt)
        dy = layer.dy_nz
        stream_nnz = exact_sum(dy, (1, 3))
        row_elems = dy.shape[1] * dy.shape[3]
        stream_rle, line_len = _row_rle(dy, act_fmt), dy.shape[3]
    else:
        dy = layer.dy_nz.transpose(0, 1)
        chan = _unit_stats(dy, _channel_line(layer, WG, hw), act_fmt)
        x = layer.x_nz  # rows are the cg input channels of a group; all groups summed
        n, c, h, w_ = x.shape
        stream_nnz = exact_sum(x.reshape(n, g, cg, h * w_), (0, 1, 3))[None, :]
        row_elems = n * g * h * w_
        if layer.x_valid is not None:  # a row slice: its explicit padding is not data
            row_elems = g * int(layer.x_valid[:, 0].sum())
        per_line = _rle(x.permute(1, 0, 2, 3).reshape(-1, w_), act_fmt).reshape(g, cg, n * h)
        stream_rle = per_line.sum((0, 2))[None, :]
        line_len = w_
    return (PhaseShape(chan, stream_nnz, row_elems, act_fmt, g, stream_rle, line_len),
            _Window(phase, layer))


def summed_phase_shape(part: LayerCapture, phase: int, hw: HardwareView,
                       chunks: list[tuple[PhaseShape, _Window]]) -> tuple[PhaseShape, _Window]:
    """`phase_shape` of a reduction chunk `part` from those of the consecutive finer chunks
    it is made of (`chunks`), without reading its maps again. Each statistic counts
    elements, non-zeros, lines or run-length padding per unit or input row, so it is the
    chunks' sum when no line spans two of them: each chunk's units hold whole lines of the
    length `part`'s has, and the channel operand is not run-length coded (a run of zeros
    may span two chunks; the stream's lines never do). Else it is made anew."""
    if len(chunks) == 1:
        return chunks[0]
    shapes = [ps for ps, _ in chunks]
    units = [ps.channel_operand for ps in shapes]
    if not len(units[0].elems) or units[0].fmt == "rle":
        return phase_shape(part, phase, hw)
    line = max(1, min(_channel_line(part, phase, hw), sum(int(u.elems[0]) for u in units)))
    if any(u.line_len != line or u.elems[0] % line for u in units):
        return phase_shape(part, phase, hw)
    def total(stat: str) -> np.ndarray:
        return sum(getattr(u, stat) for u in units)
    chan = Operand(total("elems"), total("nnz"), total("lines"), total("nz_lines"), line,
                   units[0].fmt, total("rle_padding"))
    ps = shapes[0]
    return (PhaseShape(chan, sum(p.stream_nnz for p in shapes),
                       sum(p.stream_row_elems for p in shapes), ps.stream_fmt, ps.groups,
                       sum(p.stream_rle for p in shapes), ps.stream_line_len),
            _Window(phase, part))


def _channel_line(layer: LayerCapture, phase: int, hw: HardwareView) -> int:
    """The channel operand's line before `_unit_stats` cuts it to a unit: a row of dY (WG),
    the weights' line (FF, BP; `_weight_line`), or for a MatMul's second operand (an
    activation) a row of it, as a unit."""
    k, cg, r, s = layer.w_nz.shape
    if phase == WG:
        return layer.dy_nz.shape[-1]
    unit = cg * r * s if phase == FF else k // layer.groups * r * s
    return _weight_line(unit, s, hw) if layer.weight_is_parameter else unit


def _weight_line(unit: int, s: int, hw: HardwareView) -> int:
    """The weights' line (line_bitmap's line, csr's row, csc's column count), in units of
    `unit` weights: `hw.weight_group` when set; else a whole unit for csr and csc, a row of
    the weight matrix (an output channel's C*R*S weights in FF), so a pointer a row (csr) or
    a column (csc) of a block of rows, as the formats mean; else a kernel row (1 x S, HPPU's
    line). A kernel row would cost csr a 4-byte pointer every S weights (every weight on a
    linear layer, S = 1) and csc only S + 1 pointers a block."""
    if hw.weight_group:
        return hw.weight_group
    return unit if _matrix_rows(hw) else s


def _matrix_rows(hw: HardwareView) -> bool:
    """Whether the weights' rows are the weight matrix's (csr and csc without a
    `weight_group`), not kernel rows: `_weight_line` for FF and BP, `_wg_out_bytes` for WG."""
    return hw.weight_format in ("csr", "csc") and not hw.weight_group


def _weight_units(w: torch.Tensor, phase: int, groups: int) -> torch.Tensor:
    """A weight map (K, C/g, R, S) as the channel operand's units: FF, one per output
    channel k; BP, W[:, c] for input channel c = group*cg + j, the (K/g, R, S) weights of
    that group."""
    if phase == FF:
        return w
    k, cg, r, s = w.shape
    return (w.reshape(groups, k // groups, cg, r, s).permute(0, 2, 1, 3, 4)
            .reshape(groups * cg, -1, s))


@dataclass(frozen=True)
class TileShape:
    ka: int            # output channels per tile
    images: int        # images per row block (>= 1 when rows == all rows)
    rows: int          # rows per block (== all rows when images > 1)
    rows_outer: bool = False  # loop order: row blocks outside channel blocks
    partition: str = "channels"  # what the clusters are dealt: channels, rows or reduction


def _blocks(shape: TileShape, n_img: int, n_rows: int) -> tuple[np.ndarray, ...]:
    """Image range [i0, i1) and row range [r0, r1) of every row block, in order (read-only:
    shared by every caller that asks for the same blocks, `_block_ranges`)."""
    return _block_ranges(shape.images, shape.rows, n_img, n_rows)


@lru_cache(maxsize=1024)
def _block_ranges(images: int, rows: int, n_img: int, n_rows: int) -> tuple[np.ndarray, ...]:
    """`_blocks`, made once: the tile search, every tile shape's rows and every count map's
    totals ask for the same few blocks thousands of times."""
    if rows >= n_rows:
        i0 = np.arange(0, n_img, images)
        ranges = i0, np.minimum(i0 + images, n_img), np.zeros_like(i0), np.full_like(i0, n_rows)
    else:
        per_img = -(-n_rows // rows)
        img = np.repeat(np.arange(n_img), per_img)
        r0 = np.tile(np.arange(per_img) * rows, n_img)
        ranges = img, img + 1, r0, np.minimum(r0 + rows, n_rows)
    for r in ranges:
        r.flags.writeable = False
    return ranges


def _pad_to(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """`t` zero-padded at the end of `dim` to `size` (no copy when it is that size)."""
    extra = size - t.shape[dim]
    if extra == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim) + [0, extra]
    return torch.nn.functional.pad(t, pad)


def _kept(cache: dict | None, key: tuple, held: object, make: Callable[[], T]) -> T:
    """`make()`, kept in `cache` (when given) under `key`. A key names the maps and parts it
    was made from by their ids, so the entry holds them (`held`): no other object takes one
    of those ids while it is kept."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = (held, make())
    return cache[key][1]


# A per-PE count map larger than this is kept alone (of its kind and count map): the tile
# search asks for one block size's at a time, and a linear layer's WG (VGG-16's 25088 x 4096
# has 103 M outputs, 822 MB a map) would keep one such map for every block size it tries.
LARGE_MAP_BYTES = 64 << 20


def _kept_per_pe(cache: dict | None, key: tuple, held: torch.Tensor,
                 make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`_kept` for per-PE count maps, keyed (kind, id of the count map, block size): a map
    over LARGE_MAP_BYTES replaces the other entries of its kind and count map. Every map of
    the experiments here is smaller, so they are all kept as before."""
    if cache is None:
        return make()
    if key not in cache:
        made = make()
        if made.element_size() * made.nelement() > LARGE_MAP_BYTES:
            for other in [k for k in cache if k[:2] == key[:2]]:
                del cache[other]
        cache[key] = (held, made)
    return cache[key][1]


def _row_totals(counts: torch.Tensor) -> torch.Tensor:
    """A count map's (A, I, R, L) row totals, (A, I, R), int64 sums; with rows of one output
    (a linear layer's, L = 1) a view of the map itself, not an int64 copy of it (VGG-16's
    classifier WG: 411 MB saved a map). Sum them as int64 (`_runs`)."""
    if counts.shape[3] == 1:
        return counts[..., 0]
    return exact_sum(counts, 3)


# Below this many elements an array's runs are summed by numpy's `reduceat`, above it over
# torch views (`_runs`): on ResNet-18's maps at 224 x 224, batch 8, the two cross near it.
SMALL_RUNS = 1 << 18


def _runs(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Sums (int64, exact) of consecutive runs of `size` along `dim` of a count array, the
    last run shorter where `size` does not divide it. Summed over views, in int32 where no
    sum can overflow (`exact_sum`): numpy's `reduceat` casting int32 to int64 took 5x as
    long on a 4 M map, and 30x on VGG-16's classifier WG (103 M outputs: 0.8 s a sum, 2.3
    s for one run). Small arrays take numpy's route (`SMALL_RUNS`); runs of one are `t`
    itself, as it is."""
    if size == 1:
        return t
    n = t.shape[dim]
    if t.numel() < SMALL_RUNS:  # numpy's reduceat: fewer calls, less overhead
        return torch.from_numpy(np.add.reduceat(t.numpy(), np.arange(0, n, size), axis=dim,
                                                dtype=np.int64))
    full = n // size * size
    parts = []
    if full:
        split = (*t.shape[:dim], n // size, size, *t.shape[dim + 1:])
        parts.append(exact_sum(t.narrow(dim, 0, full).reshape(split), dim + 1))
    if n > full:
        parts.append(exact_sum(t.narrow(dim, full, n - full), dim, keepdim=True))
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


def _per_tile_total(counts: torch.Tensor, shape: TileShape, cache: dict | None = None
                    ) -> np.ndarray:
    """Total counts per tile (nA, nB) of a count map (A, I, R, L), from its `_row_totals`
    (kept in `cache` by map: every tile shape of the search sums the same map). A row
    block is m whole images or a run of one image's rows (`_blocks`), a channel block a
    run of ka channels, each in order: runs along one axis each (`_runs`). Kept there too
    (read-only) by map and blocks: both loop orders of a shape, and the plans that tile a
    chunk alike, ask for the same totals."""
    def made() -> np.ndarray:
        totals = _per_tile_total_made(counts, shape, cache)
        totals.flags.writeable = False
        return totals
    return _kept(cache, ("tile_total", id(counts), shape.ka, shape.images, shape.rows),
                 counts, made)


def _per_tile_total_made(counts: torch.Tensor, shape: TileShape, cache: dict | None
                         ) -> np.ndarray:
    """`_per_tile_total`, not kept."""
    rows = _kept(cache, ("rows", id(counts)), counts, lambda: _row_totals(counts))
    a, n_img, n_rows = rows.shape
    if rows.numel() < SMALL_RUNS:  # each axis in one `reduceat`, at its blocks' starts
        i0, _, r0, _ = _blocks(shape, n_img, n_rows)
        per_block = np.add.reduceat(rows.numpy().reshape(a, -1), i0 * n_rows + r0, axis=1,
                                    dtype=np.int64)
        return np.add.reduceat(per_block, np.arange(0, a, shape.ka), axis=0)
    # channel blocks first: their sums are ka times smaller than the map, where row blocks
    # of one row each (a linear layer's WG) would copy the whole map into int64
    per_block = _runs(rows, shape.ka, 0)                        # (nA, I, R)
    if shape.rows >= n_rows:         # blocks of whole images
        per_tile = _runs(exact_sum(per_block, 2), shape.images, 1)
    else:                            # each image's rows in runs
        per_tile = _runs(per_block, shape.rows, 2).reshape(len(per_block), -1)
    return per_tile.numpy().astype(np.int64, copy=False)


def _per_tile_pe(counts: torch.Tensor, shape: TileShape, hw: HardwareView,
                 cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Busiest-PE and total counts per tile, (nA, nB) each, for a count map (A, I, R, L).
    Dealt by channels: a row block's outputs are dealt to a cluster's PEs in turn, a
    channel's to a cluster. By rows: each cluster takes a run of the block's rows
    (`cluster_blocks`) for every channel of the tile, and deals its outputs to its PEs in
    turn. Either way, where a block (run) has fewer outputs than a cluster has PEs, the PEs
    form groups that take the cluster's channels in turn (`_pe_groups`). Kept in `cache`
    (read-only) by map, block and dealing: the tile search and then `tile_part` (for each
    order and plan tiled alike) ask for the same shapes' counts."""
    def made() -> tuple[np.ndarray, np.ndarray]:
        busiest, total = _per_tile_pe_made(counts, shape, hw, cache)
        for array in (busiest, total):
            array.flags.writeable = False
        return busiest, total
    # (the loop order is not in the key: it orders the tiles, not their counts; the fields
    # of `hw` read are, as a reduction dealt across deals each slice to one cluster)
    return _kept(cache, ("tile_pe", id(counts), shape.ka, shape.images, shape.rows,
                         shape.partition, hw.clusters, hw.pes_per_cluster, hw.load_balance),
                 counts, made)


def _per_tile_pe_made(counts: torch.Tensor, shape: TileShape, hw: HardwareView,
                      cache: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """`_per_tile_pe`, not kept."""
    if shape.partition == "rows":
        per_pe = _per_pe_by_rows(counts, shape, hw, cache)
        busiest, total = _per_tile_by_rows(per_pe, shape, counts.shape, hw)
    else:
        busiest, total = _per_tile_from_pe(_per_pe(counts, shape, hw, cache), shape.ka, hw)
    if hw.load_balance:  # a balancer moves whole outputs, never splits one's sum: the
        # busiest PE takes at least the tile's largest output (a short block's one output
        # had been shared by the PEs of a full block)
        busiest = np.maximum(busiest, _per_tile_max(counts, shape, cache))
    return busiest, total


def _per_tile_max(counts: torch.Tensor, shape: TileShape, cache: dict | None = None
                  ) -> np.ndarray:
    """The largest output's count in each tile (nA, nB) of a count map (A, I, R, L): over
    each row block's outputs (`_blocks`) and each run of ka channels."""
    def largest() -> np.ndarray:
        a, n_img, n_rows, _ = counts.shape
        i0, _, r0, _ = _blocks(shape, n_img, n_rows)
        if shape.rows >= n_rows:     # blocks of whole images
            per_image = counts.reshape(a, n_img, -1).amax(2).numpy()
            per_block = np.maximum.reduceat(per_image, i0, axis=1)
        else:                        # each image's rows in runs
            per_row = counts.amax(3).numpy().reshape(a, -1)
            per_block = np.maximum.reduceat(per_row, i0 * n_rows + r0, axis=1)
        return np.maximum.reduceat(per_block, np.arange(0, a, shape.ka), axis=0).astype(
            np.int64, copy=False)
    return _kept(cache, ("max", id(counts), shape.images, shape.rows, shape.ka), counts,
                 largest)


def _per_pe(counts: torch.Tensor, shape: TileShape, hw: HardwareView,
            cache: dict | None = None) -> torch.Tensor:
    """Each channel's counts per row block and PE slot, (A, nB, PEs used): a row block's
    outputs dealt to `used` PEs in turn, the block's positions where it has fewer than the
    cluster's PEs (whatever the channel blocks: `_per_tile_from_pe` puts a cluster's
    channels on its PEs, in groups of `used` where more than one fits, `_pe_groups`).
    `cache`: kept there by map and row block, for a caller that holds the maps (a phase's
    tile search and rows)."""
    def dealt() -> torch.Tensor:
        a, n_img, n_rows, length = counts.shape
        if shape.rows >= n_rows:   # blocks of m images: (A, images, positions) in blocks
            m, size, whole = shape.images, shape.images * n_rows * length, n_img
            outer = counts.reshape(a, n_img, n_rows * length)
        else:                      # blocks of bt rows, each image's in turn
            m, size, whole = shape.rows, shape.rows * length, n_rows
            outer = counts.reshape(a * n_img, n_rows, length)
        used = min(hw.pes_per_cluster, size)  # PEs past a block's outputs idle: none
        full, largest = whole // m, _largest(counts, cache)
        blocks = _dealt_to_pes(outer[:, :full * m].reshape(outer.shape[0], full, size), used,
                               largest)
        if whole > full * m:       # a shorter last block (of each image)
            last = outer[:, full * m:].reshape(outer.shape[0], 1, -1)
            blocks = torch.cat([blocks, _dealt_to_pes(last, used, largest)], 1)
        return blocks.reshape(a, -1, used)
    return _kept_per_pe(cache, ("per_pe", id(counts), shape.images, shape.rows), counts,
                        dealt)


def _largest(counts: torch.Tensor, cache: dict | None) -> int | None:
    """An int32 count map's largest count (None for another map), `exact_sum`'s bound,
    found once for every block size the search deals the map in (kept in `cache`): without
    one, each sum of a large map had first found it, and a small map's summed in int64."""
    if counts.dtype != torch.int32 or not counts.numel():
        return None
    return _kept(cache, ("largest", id(counts)), counts, lambda: int(counts.amax()))


def _dealt_to_pes(blocks: torch.Tensor, used: int, largest: int | None = None
                  ) -> torch.Tensor:
    """Each block's positions (B, nB, positions) dealt to `used` PEs in turn: (B, nB, used)
    int64 sums (`largest`: a bound on the counts, `exact_sum`'s). Summed over views of the
    map: zero-padding the blocks and the positions to whole multiples copied the map twice
    (a quarter of the time it took). One or two rounds are added as slices: torch's sum
    over so short a dim took 2 to 4 times as long (a WG's blocks of a row or two of 9)."""
    b, nb, n = blocks.shape
    rounds = n // used
    if rounds > 2:
        dealt = exact_sum(blocks[..., :rounds * used].reshape(b, nb, rounds, used), 2,
                          largest=largest)
    elif rounds:
        dealt = blocks[..., :used].to(torch.int64, copy=True)  # (never a view of the map)
        if rounds == 2:
            dealt += blocks[..., used:2 * used]
    else:
        dealt = torch.zeros(b, nb, used, dtype=torch.int64)
    if n > rounds * used:          # the last round's positions: the first PEs'
        dealt[..., :n - rounds * used] += blocks[..., rounds * used:]
    return dealt


def _per_tile_from_pe(per_pe: torch.Tensor, ka: int, hw: HardwareView
                      ) -> tuple[np.ndarray, np.ndarray]:
    """`_per_tile_pe` from `_per_pe`'s counts: channels in blocks of `ka`, a channel to a
    cluster (ka / clusters consecutive channels each), a cluster's channels to its groups of
    PEs in turn (`_pe_groups`)."""
    a, nb, used = per_pe.shape
    na = -(-a // ka)
    clusters = min(hw.clusters, ka)
    per_cluster = -(-ka // clusters)                                  # channels a cluster
    per_pe = _pad_to(per_pe, 0, na * ka).reshape(na, ka, nb, used)
    if per_cluster > 1:
        per_pe = _pad_to(per_pe, 1, clusters * per_cluster)
        per_pe = _pe_groups(per_pe.reshape(na * clusters, per_cluster, nb, used),
                            hw.pes_per_cluster).reshape(na, clusters, nb, -1)
    busiest = per_pe.amax(dim=(1, 3))
    total = per_pe.sum(dim=(1, 3))
    if hw.load_balance:
        in_block = _block_sums(np.ones(a, np.int64), ka)
        if hw.load_balance == "clusters":  # each PE slot's work evened over the clusters
            holding = torch.from_numpy(clusters_holding(in_block, ka, hw))
            busiest = (-(-per_pe.sum(1) // holding[:, None, None])).amax(dim=2)
        else:  # ideal balancing: the tile's work shared by its active PEs, those that hold
            # outputs (an output's sum is not split between PEs: `_per_tile_pe`)
            holding = torch.from_numpy(_pes_holding(in_block, ka, used, hw))
            busiest = -(-total // holding[:, None])
    return busiest.numpy(), total.numpy()


def _pe_groups(per_pe: torch.Tensor, pes: int) -> torch.Tensor:
    """A cluster's PEs over its channels, (B, channels, nB, used) per channel and PE slot
    to (B, nB, PEs used) per PE: where a row block has fewer output positions than the
    cluster has PEs (`used` of them), its PEs form pes // used groups of `used`, each group
    taking the block's positions of one channel, the channels dealt to the groups in turn
    (channel j to group j mod groups); PEs past the last group idle. With as many positions
    as PEs, one group takes them all, for every channel. Without the groups a linear
    layer's FF at batch 2 (2 positions) kept 2 PEs of a cluster busy whatever its size
    (LeNet-5's fc1: the same 101,122 cycles with 2, 64 or 128 PEs a cluster)."""
    b, channels, nb, used = per_pe.shape
    groups = min(pes // used, channels)
    if groups > 1:   # (B, rounds, groups, nB, used): round r's channels, a group each
        rounds = -(-channels // groups)
        per_pe = _pad_to(per_pe, 1, rounds * groups).reshape(b, rounds, groups, nb, used)
        return exact_sum(per_pe, 1).permute(0, 2, 1, 3).reshape(b, nb, groups * used)
    return exact_sum(per_pe, 1)


def _pes_holding(channels_in_block: np.ndarray, ka: int, used: int, hw: HardwareView
                 ) -> np.ndarray:
    """The PEs that can hold a channel block's outputs, per block, for a balancer that moves
    whole outputs: each cluster's (`clusters_holding`), as many as it has outputs (its
    channels times the `used` positions a row block deals it), up to all its PEs."""
    per_cluster = -(-ka // min(hw.clusters, ka))
    full, rest = channels_in_block // per_cluster, channels_in_block % per_cluster
    pes = hw.pes_per_cluster
    return full * min(pes, per_cluster * used) + np.minimum(pes, rest * used)


@lru_cache(maxsize=1024)
def cluster_blocks(images: int, rows: int, n_img: int, n_rows: int, clusters: int
                   ) -> tuple[np.ndarray, ...]:
    """Dealt by rows, the run of output rows each cluster takes of every row block: image
    range [i0, i1) and row range [r0, r1) of each (read-only), and the index of each row
    block's first run. A block of m whole images gives each cluster whole images when m >=
    clusters, else each image's rows split among clusters // m clusters; a run of rows of
    one image is split among as many clusters as it has rows, up to all. Splits are as even
    as can be (sizes differ by one at most), so no cluster is dealt nothing."""
    i0, i1, r0, r1 = _block_ranges(images, rows, n_img, n_rows)
    runs: list[tuple[int, int, int, int]] = []
    first = []
    for a0, a1, b0, b1 in zip(i0.tolist(), i1.tolist(), r0.tolist(), r1.tolist(),
                              strict=True):
        first.append(len(runs))
        m = a1 - a0
        if b1 - b0 == n_rows and m >= clusters:     # whole images to each cluster
            cuts = a0 + np.arange(clusters + 1) * m // clusters
            runs += [(c0, c1, 0, n_rows) for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True)]
            continue
        k = min(max(1, clusters // m), b1 - b0)     # clusters per image
        cuts = b0 + np.arange(k + 1) * (b1 - b0) // k
        runs += [(img, img + 1, c0, c1) for img in range(a0, a1)
                 for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True)]
    out = (*(np.array(column, np.int64) for column in zip(*runs, strict=True)),
           np.array(first, np.int64))
    for r in out:
        r.flags.writeable = False
    return out


def _per_pe_by_rows(counts: torch.Tensor, shape: TileShape, hw: HardwareView,
                    cache: dict | None = None) -> torch.Tensor:
    """Each channel's counts per cluster run (`cluster_blocks`) and PE, (A, runs, PEs used),
    int32 or int64: a run's outputs, contiguous in (image, row, position) order, dealt to
    its cluster's PEs in turn. The PE slots stop at the longest run's outputs (a run of one
    output row of a linear layer's WG fills one slot, and its map would be mostly zeros);
    `_per_tile_by_rows` deals the tile's channels to groups of that many PEs."""
    def dealt() -> torch.Tensor:
        a, n_img, n_rows, length = counts.shape
        i0, i1, r0, r1, _ = cluster_blocks(shape.images, shape.rows, n_img, n_rows,
                                           hw.clusters)
        start = (i0 * n_rows + r0) * length      # each run's first output, flat
        end = ((i1 - 1) * n_rows + r1) * length  # (a run of whole images ends at n_rows)
        p = hw.pes_per_cluster
        longest = int((end - start).max())       # outputs in the longest run
        used = min(p, longest)                   # (pos - start) % p is below it
        pos = np.arange(n_img * n_rows * length)
        run = np.searchsorted(end, pos, side="right")
        index = torch.from_numpy(run * used + (pos - start[run]) % p)
        flat = counts.reshape(a, -1)
        # a PE's sum takes at most one output in p of its run: in int32 where that cannot
        # overflow (an int64 copy of VGG-16's classifier WG map took 0.8 s and 822 MB)
        outputs_per_pe = -(-longest // p)
        wide = flat.dtype != torch.int32 or outputs_per_pe * int(flat.amax()) >= 2**31
        dtype = torch.int64 if wide else torch.int32
        return torch.zeros(a, len(i0) * used, dtype=dtype).index_add_(
            1, index, flat.to(dtype)).reshape(a, len(i0), used)
    return _kept_per_pe(cache, ("rows_pe", id(counts), shape.images, shape.rows), counts,
                        dealt)


def _per_tile_by_rows(per_pe: torch.Tensor, shape: TileShape, size: torch.Size,
                      hw: HardwareView) -> tuple[np.ndarray, np.ndarray]:
    """`_per_tile_pe` dealt by rows, from `_per_pe_by_rows`: each PE's counts over the
    tile's `ka` channels, dealt to its cluster's groups of PEs in turn where a run has fewer
    outputs than the cluster has PEs (`_pe_groups`); a tile lasts as long as its busiest PE,
    of any cluster."""
    a, n_img, n_rows, length = size
    i0, i1, r0, r1, first = cluster_blocks(shape.images, shape.rows, n_img, n_rows,
                                           hw.clusters)
    ka, used = shape.ka, per_pe.shape[2]
    if ka > 1 and hw.pes_per_cluster // used > 1:   # groups of PEs: per channel block
        na = -(-a // ka)
        blocks = _pad_to(per_pe, 0, na * ka).reshape(na, ka, len(i0), used)
        per_tile = _pe_groups(blocks, hw.pes_per_cluster).numpy()
    else:
        per_tile = _runs(per_pe, ka, 0).numpy().astype(np.int64, copy=False)
    total = np.add.reduceat(per_tile.sum(2), first, axis=1)
    if hw.load_balance == "clusters":  # each PE slot's work evened over a block's clusters
        runs = np.diff(np.append(first, len(i0)))
        per_slot = np.add.reduceat(per_tile, first, axis=1)
        return (-(-per_slot // runs[None, :, None])).max(2), total
    if hw.load_balance:  # ideal balancing: the tile's work shared by the PEs that hold its
        # outputs, as many as a run has outputs of the block's channels, up to all a
        # cluster's (an output's sum is not split between PEs: `_per_tile_pe`)
        outputs = (i1 - i0) * (r1 - r0) * length
        in_block = _block_sums(np.ones(a, np.int64), ka)
        holding = np.add.reduceat(np.minimum(np.outer(in_block, outputs),
                                             hw.pes_per_cluster), first, axis=1)
        return -(-total // holding), total
    return np.maximum.reduceat(per_tile.max(2), first, axis=1), total


def clusters_holding(channels_in_block: np.ndarray, ka: int, hw: HardwareView) -> np.ndarray:
    """The clusters a channel block's channels occupy, ka / clusters consecutive channels
    each (`_per_tile_from_pe`): a short last block leaves some idle. (A cluster's PEs may
    all work on one channel, or in groups on several: `_pe_groups`.)"""
    per_cluster = -(-ka // min(hw.clusters, ka))
    return -(-channels_in_block // per_cluster)


def tile_bytes(shape: TileShape, ps: PhaseShape, win: _Window, out_rows_len: tuple[int, int],
               a_elems: int, eb: int, stream_resident: bool = False,
               channel_resident: bool = False, out_elem_bytes: int = 0,
               stored: tuple[float, float] = (1.0, 1.0)) -> int:
    """The buffer bytes of a tile's channel block, stream block and outputs; a resident
    operand (inter-layer reuse) is already in the buffer, outside the tile. An output takes
    `eb` bytes, or `out_elem_bytes` where partial sums pass through the buffer with the
    tile (`mappings.planner.output_room`). `stored`: the channel and the stream operand's
    bytes as stored over dense (`stored_ratios`), each taken at most 1: a compressed block
    takes less room than dense (a sparse design's tiles grow as its operands thin); one
    stored larger than dense (a bitmap of dense data), or denser than the layer, is found
    on the tile's own rows (`held_bytes`, `planner.searched`)."""
    n_rows, length = out_rows_len
    rows = min(shape.rows, n_rows)
    in_rows = win.rows_in
    if shape.rows < n_rows:  # the widest window of a block (the first's padding clips it)
        in_rows = win.widest(rows, n_rows)
    stream = 0 if stream_resident else shape.images * in_rows * ps.stream_row_elems
    out = shape.ka * shape.images * rows * length
    chan = 0 if channel_resident else shape.ka * a_elems
    operands = chan * eb * min(1.0, stored[0]) + stream * eb * min(1.0, stored[1])
    return math.ceil(operands) + out * (out_elem_bytes or eb)


def fits(shape: TileShape, ps: PhaseShape, win: _Window, out_rows_len: tuple[int, int],
         a_elems: int, eb: int, budget: int, stream_resident: bool = False,
         channel_resident: bool = False, out_elem_bytes: int = 0,
         stored: tuple[float, float] = (1.0, 1.0)) -> bool:
    return tile_bytes(shape, ps, win, out_rows_len, a_elems, eb, stream_resident,
                      channel_resident, out_elem_bytes, stored) <= budget


# The shapes the search hands the planner, by estimate of time: the closed form of the
# pipeline's is off by about as much as near shapes differ (it takes every tile's fetch as
# equal and charges DRAM's bus two turns a tile), so its runner-up is built too. With its
# best alone, LeNet-300-100's fc2 BP mapped again with its dY kept on chip (inter-layer
# reuse, dense.yaml, batch 4) took 10 tiles where 5 estimate faster, and the reuse lost.
KEPT = {"pipelined": 2, "bottleneck": 1}


def choose_tile(ps: PhaseShape, win: _Window, a: int, n_img: int, n_rows: int, length: int,
                hw: HardwareView, where: str, weights: bool = False,
                stream_resident: bool = False, channel_resident: bool = False,
                processed: torch.Tensor | None = None, psums_sent: float = 0.0,
                psums_dram: float = 0.0, cache: dict | None = None,
                tracked: Operand | None = None, scanned: float = 0.0, slices: int = 0,
                out_ratio: float = 1.0, out_elem_bytes: int = 0, inner: int = 0,
                circulant_block: int = 0, mac_ratio: float = 1.0, first_waits: bool = False,
                stored: tuple[float, float] | None = None) -> list[TileShape]:
    """The tile shapes and loop orders that minimise `hw.objective` (a small mapper search)
    under two estimates of time, the pipeline's (its best two, `KEPT`) and the
    bottleneck's (up to three shapes; fewer when they agree); the planner builds each and
    keeps the one whose own rows estimate best.

    Candidates: channel blocks of clusters * 2^i channels (or all of them) and row blocks of
    whole images or runs of rows, halving; each in both loop orders. For each, the bytes it
    moves are estimated from the operands' current sparsity: each operand's dense bytes times
    its compression in its format over the whole layer (`_compression`), so the order follows
    whichever operand is larger now (Trainer's "dynamic sparsity adaptive dataflow"; dense
    formats give the dense estimate). From DRAM, the block held across the inner loop is read
    once and the other once per outer iteration; to the clusters, a block is sent again on every
    tile, but for what the clusters keep of it while it is unchanged (half their local buffer
    each: `resent`). The estimate of time is the tile pipeline's, with the tiles sharing alike
    the DRAM time (the results' writes too, and a turn of DRAM's bus from reads to writes and
    back on each tile that does both), the time on the global buffer's NoC port out and back
    (the results, at `out_ratio` of their dense bytes) and the PEs' time for the MACs of
    `processed` (the per-output count map of the phase or chunk, when given) as the shape deals
    them to the PEs: each tile as long as its busiest PE, as `tile_part` will count it, so that
    small blocks pay for the PEs they leave idle and for sparse outputs dealt unevenly; each
    stage with its fixed latency a tile (`mappings.pipeline.equal_tiles_cycles`: the busiest
    stage, plus the others' share of one tile, so that one large tile that overlaps nothing does
    not look as fast as many that do, nor many tiny ones, each paying its latencies, as fast as
    a few). The bottleneck's is the largest of the DRAM time, the port time and the PEs' ideal
    time (every PE equally busy), which favoured fewer tiles on ties. The estimate of energy is
    those MACs, the bytes from DRAM (written into the buffer), the bytes sent (read from the
    buffer, over the NoC, into the clusters' buffers: the channel operand unicast, the stream
    multicast over the tree into every active cluster) and DRAM standby for that time, at the
    view's prices (`HardwareView.estimated_pj`, as the full plans' estimate). Ties go to less
    time, fewer DRAM bytes, fewer tiles, then more channels per tile. A resident operand
    (`stream_resident`, `channel_resident`: an earlier phase left it in the buffer) takes no
    tile space and no DRAM reads. A chunk of a split reduction also moves partial sums, whatever
    its tile: `psums_sent` bytes back to the PEs over the port and `psums_dram` bytes to and
    from DRAM (spilled). They count in every candidate's time and energy, so that a chunk whose
    spilled sums make it DRAM-bound does not take a tile that re-reads an operand from DRAM as
    if those reads were hidden under the port's time. `tracked`: the channel operand as DRAM
    holds it (`tracked_weights`), when a weight generator makes the rest: DRAM reads only that,
    and the generator, working beside the reads, makes `hw.weight_generator` values a cycle of
    the rest. `scanned`: the pairs the PEs' index matching ANDs (`hw.index_matching_bits` a
    cycle each); the PEs take no less than all of them spread over every PE. `slices` > 0: the
    search of a reduction dealt to that many clusters (`partition` "reduction",
    `mappings.planner`), `ps` the whole reduction's: each cluster is sent its slice of both
    operands (unicast, the sum of the slices' bytes the block's) and sends back a partial sum of
    every output of the tile; its busiest PE is estimated as the busiest of one cluster doing
    the whole reduction, over `slices` (the planner's rows count each slice's own).
    `out_ratio`: the whole output's bytes in its format over its dense bytes
    (`written_ratio`): a speculated layer writes only the outputs predicted non-zero. The
    results had been taken dense, which hid a slower dealing of the MACs behind DRAM time
    that no tile spends (Trainer's stem dealt by rows, 1.8x the cycles by channels).
    `out_elem_bytes`: an output's room in the buffer where partial sums pass through it with
    the tile (`tile_bytes`). `inner` > 0: `ps`, `processed` and `scanned` are the first of
    that many reduction chunks run innermost (`mappings.planner`'s INNER): every tile of
    every chunk reads and sends both its blocks anew, so the plan has `inner` times the
    tiles, and its MACs and pairs (the search had taken one chunk alone, its blocks kept
    from tile to tile: on Trainer's WGs a shape estimated 18x too fast).
    `first_waits`: the phase's first tile waits for an earlier phase's write-back (FF's and
    BP's, `mapper.phase_waits`), so its fetch of what was written overlaps nothing: one
    block of each such operand (the weights are read ahead, under the phase before),
    whichever loop holds it, where the equal tiles' estimate shares a block held across
    the inner loop over the tiles of its sweep; the iteration's first phase
    (`hw.first_phase`) has no phase before it to read its weights under, so their block
    counts too (with tiles sized as stored, LeNet-300's first layer on procrustes.yaml
    had taken all its weights in one block, fetched before anything could run).
    `circulant_block` b > 0: the weights are b x b circulant blocks run by FFT, as
    `tile_part` counts them: each block stored as its first row (b-fold fewer bytes), the
    MACs `mac_ratio` times those of `processed` (`circulant_mac_ratio`; the search had
    taken both as captured, CirCNN's weights b-fold heavier than they are).
    """
    a_elems = int(ps.channel_operand.elems[0]) if len(ps.channel_operand.elems) else 0
    eb = hw.element_bytes
    half_local = hw.local_buffer_bytes // 2
    # the per-PE counts each row block deals (`_per_pe`, `_per_pe_by_rows`), made once for
    # every channel block of the search, kept here when the caller keeps none
    cache = {} if cache is None else cache
    ka_options = sorted({min(a, hw.clusters * 2**i) for i in range(16)} | {a})
    blocks = [(m, n_rows) for m in sorted(set(halvings(n_img)), reverse=True)]
    blocks += [(1, r) for r in sorted(set(halvings(n_rows)), reverse=True) if r < n_rows]
    # `stored`: `stored_ratios`, given by a caller that searches in several budgets
    channel_ratio, stream_ratio = stored or stored_ratios(ps, hw, weights, circulant_block)
    # Tiles are sized as stored, but the design must hold its smallest tile at dense bytes,
    # all the check before the capture can know (`planner.geometry_misfit`): else a sparse
    # layer would map where the check refuses the design, and a denser one would not. (That
    # tile, no larger as stored, is then among the candidates: the search always has one.)
    if smallest_tile(ps, win, a, n_rows, length, hw, channel_resident, out_elem_bytes,
                     stream_resident)[1] > hw.buffer_bytes:
        raise misfit(ps, win, a, n_rows, length, hw, where, out_elem_bytes)
    weights_ahead = weights and not hw.first_phase  # read under the phase before (below)
    channel_bytes = a * a_elems * eb * channel_ratio
    channel_dram = 0 if channel_resident else channel_bytes
    generated = 0.0  # values the weight generator makes for one read of the channel operand
    if tracked is not None and not channel_resident:
        chan = ps.channel_operand
        channel_dram = a * a_elems * eb * _channel_ratio(tracked, hw, weights=True)
        generated = a * int(chan.nnz.sum() - tracked.nnz.sum()) / max(1, len(chan.elems))
    macs = 0 if processed is None else _kept(cache, ("total", id(processed)), processed,
                                             lambda: count_total(processed))
    chunks = max(1, inner)
    macs, scanned = macs * chunks * mac_ratio, scanned * chunks
    scan_time = scanned / (hw.pes * hw.index_matching_bits) if scanned else 0.0
    ideal_compute = max(hw.ideal_compute_cycles(macs), scan_time)
    # the results, whatever the tile: gathered over the port and written to DRAM, at the
    # whole output's bytes in its format over dense (`out_ratio`; the rows count each tile's)
    dense_out = a * n_img * n_rows * length * eb
    out_bytes = dense_out * out_ratio
    out_dram = out_bytes if hw.output_to_dram else 0
    orders = {"auto": (False, True), "weight_stationary": (False,),
              "input_stationary": (True,)}[hw.dataflow]
    # what the clusters may be dealt: a reduction's slices (`slices`), else the design's
    # other partitions (a design that deals only reductions deals channels where it cannot)
    partitions = (("reduction",) if slices else
                  tuple(p for p in hw.partitions if p != "reduction") or ("channels",))
    # the PEs a tile's busiest is counted on: a reduction's slice takes all the tile's
    # channels in one cluster
    pe_view = replace(hw, clusters=1) if slices else hw
    gathered = dense_out * hw.psum_bytes // eb * slices if slices else out_bytes
    # of each channel block size: the blocks, a block's bytes and the clusters it occupies
    per_ka = {ka: (-(-a // ka), channel_bytes / -(-a // ka),
                   int(clusters_holding(np.array([ka]), ka, hw)[0])) for ka in ka_options}
    best: dict[str, tuple] = {}   # estimate -> (key, shape)
    for images, rows in blocks:
        i0, i1, r0, r1 = _blocks(TileShape(1, images, rows), n_img, n_rows)
        h0, h1 = win(r0, r1)
        stream_bytes = (int(((i1 - i0) * (h1 - h0)).sum()) * ps.stream_row_elems * eb
                        * stream_ratio)
        nb = len(i0)
        stream_dram = 0 if stream_resident else stream_bytes
        if "rows" in partitions:  # dealt by rows, each cluster is sent its rows' window
            runs = cluster_blocks(images, rows, n_img, n_rows, hw.clusters)
            g0, g1 = win(runs[2], runs[3])
            run_bytes = (int(((runs[1] - runs[0]) * (g1 - g0)).sum()) * ps.stream_row_elems
                         * eb * stream_ratio)   # more than the block's: halos overlap
            rows_active = len(runs[0]) / nb   # clusters a block's runs occupy, on average
        for ka in ka_options:
            shape = TileShape(ka, images, rows)
            if not fits(shape, ps, win, (n_rows, length), a_elems, eb, hw.buffer_bytes,
                        stream_resident, channel_resident, out_elem_bytes,
                        (channel_ratio, stream_ratio)):
                continue
            na, channel_block, channel_active = per_ka[ka]
            busiest_time = {}  # the PEs' time as the shape deals the MACs, when it matters
            for outer, partition in ((o, p) for o in orders for p in partitions):
                if outer and len(orders) == 2 and (na == 1 or nb == 1):
                    continue  # one block of either kind: the same tiles as rows inside
                    # (kept as well, it took the runner-up's place among the shapes handed
                    # to the planner, `KEPT`, on 148 of LeNet-300's 148 searches)
                by_rows = partition == "rows"
                if slices:    # each cluster its slice of both operands
                    active = slices
                    stream_to, stream_keep = stream_bytes, half_local * active
                    channel_keep = half_local * active
                elif by_rows:  # the channel operand to every cluster, each keeping it whole
                    active = rows_active
                    stream_to, stream_keep = run_bytes, half_local * active
                    channel_keep = half_local
                else:         # the channel operand shared out, the stream to every cluster
                    active = channel_active
                    stream_to, stream_keep = stream_bytes, half_local
                    channel_keep = half_local * active
                stream_block = stream_to / nb
                channel_reads = nb if outer and na > 1 else 1
                if outer:   # rows outside: channel blocks change every tile
                    dram = stream_dram + channel_dram * channel_reads
                    stream_sent = nb * resent(stream_block, na, stream_keep)
                    channel_sent = (channel_bytes * nb if na > 1
                                    else resent(channel_block, nb, channel_keep))
                else:       # channels outside: row blocks change every tile
                    dram = channel_dram + stream_dram * (na if nb > 1 else 1)
                    channel_sent = na * resent(channel_block, nb, channel_keep)
                    stream_sent = (stream_to * na if nb > 1
                                   else resent(stream_block, na, stream_keep))
                tiles = na * nb
                if inner:  # chunks innermost: both blocks anew on every tile of every chunk
                    dram = inner * (channel_dram * nb + stream_dram * na)
                    channel_sent, stream_sent = inner * channel_bytes * nb, inner * stream_to * na
                    tiles *= inner
                dram += psums_dram
                multicast, unicast = ((channel_sent, stream_sent) if by_rows
                                      else (stream_sent, channel_sent))
                if slices:
                    multicast, unicast = 0.0, multicast + unicast
                unicast += psums_sent
                dram_time = dram / hw.dram_bytes_per_cycle
                if generated:  # the fetch waits for the slower of DRAM and the generator
                    dram_time = max(dram_time,
                                    generated * channel_reads / hw.weight_generator)
                # The first tile's fetch of what waits for an earlier phase's write-back: a
                # block of the stream operand, and of the channel operand unless that is
                # the weights (read ahead, under the phase before); nothing of the phase
                # runs before it ends
                first_fetch = 0.0
                if first_waits:
                    first_fetch = ((stream_dram / nb + (0 if weights_ahead else channel_dram / na))
                                   / hw.dram_bytes_per_cycle + hw.dram_latency_cycles)
                port_time = (multicast + unicast) / hw.noc_port_bytes_per_cycle
                # DRAM's bytes are written into the buffer, the sent ones read from it; the
                # multicast goes over the tree into every active cluster's buffer
                moves = {"macs": macs, "scanned": scanned, "matched": macs if scanned else 0,
                         # (the spilled partial sums: half written out, half read back)
                         "dram": dram - psums_dram / 2, "dram_write": psums_dram / 2,
                         "glb": dram + multicast + unicast,
                         "unicast": unicast, "multicast": multicast,
                         "local": unicast + active * multicast}
                tail = (dram, tiles, -ka, outer, by_rows)
                turns = 2 * tiles if out_dram and dram else 0  # reads and writes alternate
                stages = (dram_time + out_dram / hw.dram_bytes_per_cycle
                          + tiles * hw.dram_latency_cycles + turns * hw.dram_switch_cycles,
                          port_time + tiles * hw.noc_latency_cycles,
                          tiles * hw.pipeline_cycles,   # the PEs' fill; their time added
                          (gathered + psums_sent) / hw.noc_port_bytes_per_cycle
                          + tiles * hw.noc_latency_cycles)
                keys = {"bottleneck": _rank(hw, max(dram_time, port_time, ideal_compute),
                                            moves, tail)}
                if processed is None:
                    keys["pipelined"] = _rank(hw, _pipelined(stages, 0.0, tiles, first_fetch),
                                              moves, tail)
                else:
                    # The busiest PEs take no less than every PE equally busy: a shape that
                    # loses even so is not worth dealing its MACs out (the search's dearest
                    # step), its rank being no better than with that bound.
                    bound = _rank(hw, _pipelined(stages, ideal_compute, tiles, first_fetch),
                                  moves, tail)
                    if "pipelined" not in best or bound < best["pipelined"][-1][0]:
                        if hw.systolic_cycles_per_mac:  # the array's: no PE is busiest
                            busiest_time[partition] = ideal_compute
                        elif partition not in busiest_time:
                            dealt = TileShape(ka, images, rows, partition="channels" if slices
                                              else partition)
                            busiest = _per_tile_pe(processed, dealt, pe_view, cache)[0]
                            if slices:
                                busiest = -(-busiest // slices)
                            if mac_ratio != 1.0:
                                busiest = np.ceil(busiest * mac_ratio)
                            busiest_time[partition] = max(chunks * float(np.ceil(
                                busiest / hw.macs_per_pe_per_cycle).sum()), scan_time)
                        keys["pipelined"] = _rank(hw, _pipelined(
                            stages, busiest_time[partition], tiles, first_fetch),
                            moves, tail)
                shape = TileShape(ka, images, rows, outer, partition)
                for estimate, key in keys.items():
                    kept = best.setdefault(estimate, [])
                    if len(kept) < KEPT[estimate] or key < kept[-1][0]:
                        kept[:] = sorted([*kept, (key, shape)], key=lambda k: k[0])[:KEPT[estimate]]
    return list(dict.fromkeys(s for e in ("pipelined", "bottleneck") for _, s in best[e]))


def smallest_tile(ps: PhaseShape, win: _Window, a: int, n_rows: int, length: int,
                  hw: HardwareView, channel_resident: bool = False, out_elem_bytes: int = 0,
                  stream_resident: bool = False) -> tuple[TileShape, int]:
    """The smallest tile the search considers, one row of one image over as many channels
    as there are clusters (or channels), and the buffer bytes it takes (`tile_bytes`) at
    dense bytes: the layer's geometry alone, what the check before the capture knows (its
    operands as stored take no more, `tile_bytes`, but for a format larger than dense)."""
    shape = TileShape(max(1, min(a, hw.clusters)), 1, 1)
    a_elems = int(ps.channel_operand.elems[0]) if len(ps.channel_operand.elems) else 0
    return shape, tile_bytes(shape, ps, win, (n_rows, length), a_elems, hw.element_bytes,
                             stream_resident, channel_resident, out_elem_bytes)


def misfit(ps: PhaseShape, win: _Window, a: int, n_rows: int, length: int, hw: HardwareView,
           where: str, out_elem_bytes: int = 0) -> ConfigError:
    """The error for a phase whose smallest tile does not fit the buffer's tile half."""
    shape, need = smallest_tile(ps, win, a, n_rows, length, hw, out_elem_bytes=out_elem_bytes)
    channels = f"{shape.ka} channel" + ("s" if shape.ka > 1 else "")
    # a tile deals a channel to each cluster at least: many clusters make a large tile
    fewer = (f", or use fewer PE clusters (of the {hw.clusters}, it deals one channel to "
             f"each of {shape.ka})" if shape.ka > 1 else "")
    return TileMisfit(f"{where}: the smallest tile ({channels} x 1 row) needs "
                      f"{need} bytes but the global buffer gives a tile "
                      f"{hw.buffer_bytes} bytes; enlarge the buffer or shrink the "
                      f"batch{fewer}", need, hw.buffer_bytes)


class TileMisfit(ConfigError):
    """A plan's smallest tile larger than the budget it was given: `need_bytes` and
    `given_bytes`, so that of several plans the one nearest to fitting is said."""

    def __init__(self, message: str, need_bytes: int, given_bytes: int):
        super().__init__(message, key=BUFFER_KEY)
        self.need_bytes, self.given_bytes = need_bytes, given_bytes


def _rank(hw: HardwareView, time: float, moves: dict[str, float], tail: tuple) -> tuple:
    """A candidate shape's rank in the tile search, smallest first: `hw.objective` on its
    estimated time and energy (`moves` at the view's prices, DRAM standby for `time`), then
    time, then `tail` (DRAM bytes, tiles, more channels first, loop order). It never falls
    as `time` grows."""
    pj = hw.estimated_pj(**moves, cycles=time)
    return (hw.objective_value(time, pj), time, *tail)


def _pipelined(stages: tuple[float, float, float, float], compute: float,
               tiles: int, first_fetch: float = 0.0) -> float:
    """`equal_tiles_cycles` of a candidate's stages (DRAM, port out, the PEs' fill, port
    back) with `compute` cycles of the PEs' work added to theirs, its first tile's fetch
    `first_fetch` cycles (`choose_tile`'s `first_waits`)."""
    dram, port, fill, back = stages
    return equal_tiles_cycles([dram, port, fill + compute, back], tiles, first_fetch)


def stored_ratios(ps: PhaseShape, hw: HardwareView, weights: bool, circulant_block: int = 0
                  ) -> tuple[float, float]:
    """Bytes as stored over dense of the channel and the stream operand, whole layer
    (`_compression`): what the tile search estimates each block's bytes by, from DRAM, sent
    and in the buffer (`tile_bytes`). Circulant weights (`circulant_block` b > 0) are
    stored as each b x b block's first row, dense."""
    channel_ratio, stream_ratio = _compression(ps, hw, weights)
    if circulant_block and weights:
        channel_ratio = 1 / circulant_block
    return channel_ratio, stream_ratio


def _compression(ps: PhaseShape, hw: HardwareView, weights: bool) -> tuple[float, float]:
    """Bytes in format over dense bytes of the channel and the stream operand, whole layer.
    `weights`: the channel operand is W (its values take `hw.weight_bits`)."""
    eb = hw.element_bytes
    elems = np.array([ps.stream_nnz.numel() * ps.stream_row_elems])
    stream_bytes = int(_stream_bytes(ps, elems, np.array([int(ps.stream_nnz.sum())]),
                                     np.array([int(ps.stream_rle.sum())]), eb)[0])
    return (_channel_ratio(ps.channel_operand, hw, weights),
            float(stream_bytes / elems[0] / eb) if elems[0] else 1.0)


def _channel_ratio(chan: Operand, hw: HardwareView, weights: bool) -> float:
    """Bytes in format over dense bytes of a channel operand, all its units together."""
    dense = int(chan.elems.sum()) * hw.element_bytes
    stored = int(_channel_bytes(chan, max(1, len(chan.elems)), hw, weights).sum())
    return stored / dense if dense else 1.0


def _channel_bytes(chan: Operand, size: int, hw: HardwareView, weights: bool) -> np.ndarray:
    """Bytes of each block of `size` units of a channel operand in its format; `weights`:
    the operand is W, whose values take `hw.weight_bits`."""
    return operand_bytes(chan.fmt, chan.block_stats(size), hw.element_bytes,
                         value_bits=(hw.weight_bits or None) if weights else None)


def _stream_bytes(ps: PhaseShape, elems: np.ndarray, nnz: np.ndarray, rle: np.ndarray,
                  eb: int) -> np.ndarray:
    """Bytes of stream-operand blocks of `elems` elements (whole feature-map lines), `nnz`
    non-zeros and `rle` run-length padding entries, in the stream's format."""
    lines = elems // ps.stream_line_len
    return operand_bytes(ps.stream_fmt, BlockStats(elems, nnz, lines, lines,
                                                   ps.stream_line_len, rle), eb)


def resent(block: float, tiles: int, keep: float) -> float:
    """Bytes sent for a block that `tiles` consecutive tiles use: whole to the first, and
    to each other what the clusters could not keep of it (`keep` bytes stay)."""
    return block + (tiles - 1) * max(block - keep, 0.0)


def _share(entries: np.ndarray, sent: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """A block's entries in proportion to the part of it sent (rounded up)."""
    return -(-entries * sent // np.maximum(whole, 1))


def halvings(n: int) -> list[int]:
    out = []
    while n >= 1:
        out.append(n)
        n = n // 2 if n > 1 else 0
    return out


def _block_sums(values: np.ndarray, size: int) -> np.ndarray:
    """Sums of consecutive blocks of `size` along the first dim (last block may be short)."""
    padded = np.zeros(-(-len(values) // size) * size, np.int64)
    padded[:len(values)] = values
    return padded.reshape(-1, size).sum(1)


@lru_cache(maxsize=256)
def _tile_order(na: int, nb: int, rows_outer: bool) -> tuple[np.ndarray, ...]:
    """Each tile's channel block and row block, in loop order (row blocks outside:
    `rows_outer`), and where each block changes from the tile before (`_changed`);
    read-only, made once: a run's thousands of tilings have a few hundred such orders."""
    if rows_outer:
        ia, ib = np.tile(np.arange(na), nb), np.repeat(np.arange(nb), na)
    else:
        ia, ib = np.repeat(np.arange(na), nb), np.tile(np.arange(nb), na)
    out = (ia, ib, _changed(ia), _changed(ib))
    for array in out:
        array.flags.writeable = False
    return out


def _changed(index: np.ndarray) -> np.ndarray:
    """True where a tile needs a different block than the tile before it."""
    out = np.ones(len(index), dtype=bool)
    out[1:] = index[1:] != index[:-1]
    return out


def tracked_weights(layer: LayerCapture, phase: int, ps: PhaseShape, hw: HardwareView,
                    circulant_block: int = 0, cache: dict | None = None) -> Operand | None:
    """The channel operand as DRAM holds it when a weight generator makes the rest: DropBack's
    tracked non-zero weights, per unit of `ps.channel_operand` (every unit, not only the
    kept channels). None when DRAM holds the whole operand: no generator, no DropBack, or
    the channel operand is not W (WG), or W is stored as circulant blocks. `cache`: the
    tile search's (`_kept`), where each chunk's are made once for all its plans' shapes."""
    if (phase == WG or not layer.weight_is_parameter or not hw.weight_generator
            or layer.w_tracked is None or circulant_block):
        return None
    chan = ps.channel_operand
    return _kept(cache, ("tracked", id(layer), phase, chan.line_len, chan.fmt), layer,
                 lambda: _unit_stats(_weight_units(layer.w_tracked & layer.w_nz, phase,
                                                   ps.groups), chan.line_len, chan.fmt))


def tile_part(layer: LayerCapture, shaped: tuple[PhaseShape, _Window], layer_index: int,
              phase: int, hw: HardwareView, policy: SkipPolicy,
              maps: tuple[torch.Tensor, ...], channels: torch.Tensor, shape: TileShape, *,
              pruned_grads_unused: bool, last: bool, reuse: bool, circulant_block: int = 0,
              stream_resident: bool = False, channel_resident: bool = False,
              cache: dict | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """Event rows of one (chunk of a) phase, given its count maps of the kept channels only
    (`planner._count_maps`: processed per output, the others per output row), the weight
    bytes they read from DRAM, and each row's outputs in bytes as dense partial sums (at the
    accumulator's precision). `reuse`: consecutive tiles may keep a block (False when
    chunks interleave); `stream_resident` (`channel_resident`): the stream (channel)
    operand is already in the global buffer, left there by an earlier phase, so no tile
    reads it from DRAM. `cache`: the tile search's, of what the shapes it tries derive
    alike from the maps and the part (`_kept`)."""
    nominal, effectual, processed, speculated, scanned = maps
    ps, _ = shaped
    _, n_img, n_rows, length = processed.shape
    busiest, work = _per_tile_pe(processed, shape, hw, cache)
    eff = _per_tile_total(effectual, shape, cache)
    nom = _per_tile_total(nominal, shape, cache)
    spec = (np.zeros_like(work) if speculated is None
            else _per_tile_total(speculated, shape, cache))
    scan = np.zeros_like(work) if scanned is None else _per_tile_total(scanned, shape, cache)
    na, nb = busiest.shape
    eb, ka = hw.element_bytes, shape.ka
    weights = phase != WG and layer.weight_is_parameter  # the channel operand is W
    b = circulant_block
    if b:  # FFT-domain work: every PE's MACs scale alike (mappings.circulant)
        ratio = circulant_mac_ratio(layer, b)
        busiest = np.ceil(busiest * ratio).astype(np.int64)
        work = np.ceil(work * ratio).astype(np.int64)

    a_bytes, a_lines, a_dram_bytes, regenerated, channels_in_block = _channel_blocks(
        layer, phase, ps, channels, ka, hw, weights, b, cache)
    i0, i1, r0, r1, s_bytes, sent_elems, sent_bytes, occupied = _stream_blocks(
        shaped, shape, n_img, n_rows, hw, cache)
    by_rows = shape.partition == "rows"
    groups_frac, group_sets = _groups_touched(layer, phase, channels, ka, na, ps.groups)

    # Outputs: every output final in its tile (after the last chunk of a split reduction).
    written = (_kept(cache, ("written", id(layer), id(channels)), (layer, channels),
                     lambda: _written_rows(layer, phase, hw, channels))
               if last else None)  # earlier chunks write none
    outputs = np.outer(channels_in_block, (i1 - i0) * (r1 - r0) * length)  # per tile
    if not last:
        out_bytes = np.zeros((na, nb), np.int64)
    elif phase == WG and policy.pruned_weight_gradients and pruned_grads_unused:
        out_bytes = _wg_out_bytes(layer, channels, shape, hw, cache)
    elif written is not None:
        out_bytes = _activation_out_bytes(written, shape, hw, outputs // length, length,
                                          cache)
    else:
        out_bytes = outputs * eb  # dense
    if b and phase == WG:  # the gradient of each block's first row only
        out_bytes = -(-out_bytes // b)
    ia, ib, a_changed, b_changed = _tile_order(na, nb, shape.rows_outer)
    out_bytes = out_bytes[ia, ib]
    a_tile = a_bytes[ia]
    s_tile = np.round(s_bytes[ib] * groups_frac[ia]).astype(np.int64)
    s_to = np.round(sent_bytes[ib] * groups_frac[ia]).astype(np.int64)   # to the clusters
    a_new, s_new = (a_changed, b_changed) if reuse else (np.ones(len(ia), bool),) * 2
    if reuse:  # a grouped conv's stream block is new too where the channels' groups change
        s_new = s_new | _changed(group_sets[ia])
    a_dram = a_dram_bytes[ia] * a_new
    regenerated_bytes = (a_tile * a_new) - a_dram  # written into the buffer by the generator
    if channel_resident:  # WG's dY, kept in the buffer by its BP
        a_dram = np.zeros_like(a_dram)
    dram_read = a_dram + (0 if stream_resident else s_tile * s_new)
    # The clusters keep what they can of an unchanged block between tiles, half their local
    # buffer each (the other half takes what changes): only the rest is sent again. A block
    # each cluster has whole (the multicast one) is kept in that room; one shared out, in all
    # the active clusters' rooms.
    half_local = hw.local_buffer_bytes // 2
    if by_rows:
        active = occupied[ib]
        a_sent = np.where(a_new, a_tile, np.maximum(a_tile - half_local, 0))
        s_sent = np.where(s_new, s_to, np.maximum(s_to - half_local * active, 0))
    else:
        active = clusters_holding(channels_in_block, ka, hw)[ia]
        a_sent = np.where(a_new, a_tile, np.maximum(a_tile - half_local * active, 0))
        s_sent = np.where(s_new, s_to, np.maximum(s_to - half_local, 0))
    table = empty_table(na * nb)
    table["layer"] = layer_index
    table["phase"] = phase
    table["dram_read_bytes"] = dram_read
    table["weight_read_bytes"] = a_dram if weights else 0
    table["multicast_bytes"] = a_sent if by_rows else s_sent
    table["unicast_bytes"] = s_sent if by_rows else a_sent
    table["gather_bytes"] = out_bytes
    table["dram_write_bytes"] = out_bytes if hw.output_to_dram else 0
    table["glb_read_bytes"] = s_sent + a_sent
    table["glb_write_bytes"] = dram_read + regenerated_bytes + out_bytes
    # In the buffer, its blocks whole as stored (a kept block too), and room for its outputs:
    # an element each, or their bytes as written where the format takes more
    table["held_bytes"] = ((0 if channel_resident else a_tile)
                           + (0 if stream_resident else s_tile)
                           + np.maximum(out_bytes, outputs[ia, ib] * eb))
    table["regenerated_weights"] = regenerated[ia] * a_new
    table["regenerated_bytes"] = regenerated_bytes
    table["active_clusters"] = active
    table["dealt"] = DEALT.index(shape.partition)
    if hw.selector_entries_per_cycle:
        # what is sent again is scanned again, in proportion; level 2 the streamed operand
        table["selector_entries"] = _share(a_lines[ia], a_sent, a_tile)
        if hw.selector_levels == 2:
            table["selector_entries"] += _share(sent_elems[ib], s_sent, s_to)
    table["speculated_ops"] = spec[ia, ib]
    table["scanned_pairs"] = scan[ia, ib]
    table["busiest_pe_macs"] = busiest[ia, ib]
    table["processed_macs"] = work[ia, ib]
    table["effectual_macs"] = eff[ia, ib]
    table["macs"] = nom[ia, ib]
    return table, int(a_dram.sum()) if weights else 0, (outputs * hw.psum_bytes)[ia, ib]


def circulant_mac_ratio(layer: LayerCapture, circulant_block: int) -> float:
    """A circulant layer's FFT-domain MACs over its dense ones, every PE's alike
    (`mappings.circulant.fft_mac_ratio`)."""
    k, cg = layer.w_nz.shape[:2]
    return fft_mac_ratio(circulant_block, k, cg * layer.groups)


def _channel_blocks(layer: LayerCapture, phase: int, ps: PhaseShape, channels: torch.Tensor,
                    ka: int, hw: HardwareView, weights: bool, circulant_block: int,
                    cache: dict | None) -> tuple[np.ndarray, ...]:
    """`tile_part`'s channel operand (the kept `channels`) per block of `ka` channels: its
    bytes as stored, its lines, its bytes from DRAM, the weights the generator makes
    (DropBack) and the channels in each block (read-only). Kept in `cache`: the search's
    shapes with `ka` channels a block (their row blocks and loop orders differ) share them."""
    def made() -> tuple[np.ndarray, ...]:
        chan = ps.channel_operand.select(channels.numpy())
        b, eb = circulant_block, hw.element_bytes
        if b and weights:  # each b x b block kept as its first row, stored dense
            a_bytes = -(-operand_bytes("dense", chan.block_stats(ka), eb) // b)
        else:
            a_bytes = _channel_bytes(chan, ka, hw, weights)
        a_dram_bytes, regenerated = a_bytes, np.zeros(len(a_bytes), np.int64)
        tracked = tracked_weights(layer, phase, ps, hw, b, cache)
        if tracked is not None:  # DropBack: the generator makes the untracked weights
            tracked = tracked.select(channels.numpy())
            a_dram_bytes = _channel_bytes(tracked, ka, hw, weights=True)
            regenerated = _block_sums(chan.nnz - tracked.nnz, ka)
        out = (a_bytes, _block_sums(chan.lines, ka), a_dram_bytes, regenerated,
               _block_sums(np.ones(len(channels), np.int64), ka))
        for array in out:
            array.flags.writeable = False
        return out
    return _kept(cache, ("channel_blocks", id(layer), id(ps), id(channels), phase, ka, weights,
                         circulant_block, hw.element_bytes, hw.weight_bits,
                         hw.weight_generator), (layer, ps, channels), made)


def _stream_blocks(shaped: tuple[PhaseShape, _Window], shape: TileShape, n_img: int,
                   n_rows: int, hw: HardwareView, cache: dict | None
                   ) -> tuple[np.ndarray | None, ...]:
    """`tile_part`'s stream operand per row block of `shape`, with its halo (2-D prefix sums
    over image and input row): the blocks' image and row ranges, their bytes as stored, and
    the elements and bytes sent to the clusters, with the clusters each block occupies when
    dealt by rows (else None; read-only). Kept in `cache`: the search's shapes with these
    row blocks (their channel blocks and loop orders differ) share them."""
    def made() -> tuple[np.ndarray | None, ...]:
        ps, win = shaped
        eb = hw.element_bytes
        i0, i1, r0, r1 = _blocks(shape, n_img, n_rows)
        h0, h1 = win(r0, r1)
        s_nnz = _window_sums(ps.stream_nnz, i0, i1, h0, h1, cache)
        s_elems = (i1 - i0) * (h1 - h0) * ps.stream_row_elems
        s_bytes = _stream_bytes(ps, s_elems, s_nnz,
                                _window_sums(ps.stream_rle, i0, i1, h0, h1, cache), eb)
        occupied = None
        if by_rows:  # each cluster is sent its rows' window, per block: halos overlap
            c0, c1, q0, q1, first = cluster_blocks(shape.images, shape.rows, n_img, n_rows,
                                                   hw.clusters)
            g0, g1 = win(q0, q1)
            run_elems = (c1 - c0) * (g1 - g0) * ps.stream_row_elems
            run_bytes = _stream_bytes(ps, run_elems,
                                      _window_sums(ps.stream_nnz, c0, c1, g0, g1, cache),
                                      _window_sums(ps.stream_rle, c0, c1, g0, g1, cache), eb)
            sent_elems = np.add.reduceat(run_elems, first)
            sent_bytes = np.add.reduceat(run_bytes, first)
            occupied = np.diff(np.append(first, len(c0)))
        else:
            sent_elems, sent_bytes = s_elems, s_bytes
        out = (i0, i1, r0, r1, s_bytes, sent_elems, sent_bytes, occupied)
        for array in out:
            if array is not None:
                array.flags.writeable = False
        return out
    by_rows = shape.partition == "rows"
    return _kept(cache, ("stream_blocks", id(shaped[0]), id(shaped[1]), shape.images,
                         shape.rows, by_rows, hw.clusters if by_rows else 0, hw.element_bytes,
                         n_img, n_rows), shaped, made)


def stored_weight_bytes(layer: LayerCapture, kept: torch.Tensor, hw: HardwareView) -> int:
    """Bytes of a layer's weights where `kept` (a mask of W's shape) as DRAM holds them: in
    the weight format with FF's lines (`_channel_line`), all of them in one block, as FF's
    tiles read them."""
    units = _unit_stats(_weight_units(kept, FF, layer.groups), _channel_line(layer, FF, hw),
                        hw.weight_format)
    return int(_channel_bytes(units, max(1, len(units.elems)), hw, weights=True).sum())


def written_bytes(layer: LayerCapture, phase: int, hw: HardwareView) -> int:
    """Bytes of FF's or BP's whole output, every channel, as its tiles would write it: in the
    activation format from `_written_map`, else dense."""
    stats = written_stats(layer, phase, hw)
    if stats is None:
        return (layer.dy_nz if phase == FF else layer.x_nz).numel() * hw.element_bytes
    return int(operand_bytes(hw.activation_format, stats, hw.element_bytes)[0])


def written_stats(layer: LayerCapture, phase: int, hw: HardwareView) -> BlockStats | None:
    """FF's or BP's whole output as its tiles write it, as non-zero statistics (one block,
    as a vector layer's); None: written dense (`_written_map`)."""
    written = _written_map(layer, phase, hw)
    return None if written is None else map_stats(written,
                                                  rle=hw.activation_format == "rle")


def written_ratio(layer: LayerCapture, phase: int, hw: HardwareView,
                  kept_gradients: bool = False, circulant_block: int = 0) -> float:
    """A phase's whole output, bytes as written over dense bytes: what the tile search
    takes for the results' moves. WG's dW is dense, or with `kept_gradients` (WG computes
    the kept weights' alone) theirs in the weight format, as one tile of every channel
    writes them (`_wg_out_bytes`; the search had taken them dense, 2.4x HPPU's bytes); a
    circulant layer's b-fold fewer (`gradient_bytes`)."""
    if phase == WG:
        ratio = 1.0
        if kept_gradients and layer.w_nz.numel():
            k, cg = layer.w_nz.shape[:2]
            out = _wg_out_bytes(layer, torch.arange(k), TileShape(k, 1, cg), hw)
            ratio = float(out.sum()) / (layer.w_nz.numel() * hw.element_bytes)
        return ratio / max(circulant_block, 1)
    dense = (layer.dy_nz if phase == FF else layer.x_nz).numel() * hw.element_bytes
    return written_bytes(layer, phase, hw) / dense if dense else 1.0


def gradient_bytes(layer: LayerCapture, channels: torch.Tensor, hw: HardwareView,
                   kept_gradients: bool, circulant_block: int = 0) -> int:
    """Bytes of WG's dW of the output `channels`, written as one tile of them: dense, or with
    `kept_gradients` the kept weights' in the weight format (`_wg_out_bytes`, as
    `written_ratio`); a circulant layer's b-fold fewer (each block's first row)."""
    k, cg, r, s = layer.w_nz.shape
    if not len(channels):
        return 0
    out = (int(_wg_out_bytes(layer, channels, TileShape(len(channels), 1, cg), hw).sum())
           if kept_gradients else len(channels) * cg * r * s * hw.element_bytes)
    return -(-out // circulant_block) if circulant_block else out


def _written_map(layer: LayerCapture, phase: int, hw: HardwareView) -> torch.Tensor | None:
    """The non-zero map (A, images, rows, L) of what FF or BP writes, when the activation
    format compresses it and the capture has it; None: written dense.

    FF writes Y, after the ReLU that directly follows when the ReLU is fused (and, with
    speculation, zero where the prediction said so); BP writes dX, zero where X is zero when
    BP skips ReLU-masked gradients."""
    if hw.activation_format == "dense":
        return None
    if phase == FF and layer.y_nz is not None:
        y = layer.y_relu_nz if hw.fused_relu and layer.y_relu_nz is not None else layer.y_nz
        if hw.speculate_relu_outputs and layer.y_spec is not None:
            y = y & layer.y_spec
        return y.transpose(0, 1)
    if phase == BP and layer.dx_nz is not None:
        dx = layer.dx_nz & layer.x_nz if hw.skip_relu_masked_gradients else layer.dx_nz
        return dx.transpose(0, 1)
    return None


def _written_rows(layer: LayerCapture, phase: int, hw: HardwareView, channels: torch.Tensor
                  ) -> tuple[torch.Tensor, ...] | None:
    """Of the `channels` of what FF or BP writes (`_written_map`), per output row (A,
    images, rows, 1): its non-zeros, whether it has any and its run-length padding entries
    (zeros unless the activation format is run-length coding); None: written dense."""
    written = _written_map(layer, phase, hw)
    if written is None:
        return None
    written = written[channels]
    a, n_img, n_rows, length = written.shape
    nnz = exact_sum(written, -1, keepdim=True)
    return (nnz, nnz > 0,  # (torch's `any` over the rows took longer than their sums)
            _rle(written.reshape(-1, length), hw.activation_format).reshape(a, n_img, n_rows, 1))


def _activation_out_bytes(written: tuple[torch.Tensor, ...], shape: TileShape,
                          hw: HardwareView, lines: np.ndarray, length: int,
                          cache: dict | None = None) -> np.ndarray:
    """Bytes of each tile's outputs (nA, nB) in the activation format, lines the output
    rows (`lines` of them a tile, `length` long), from their `_written_rows`."""
    nnz, nz_lines, rle = (_per_tile_total(rows, shape, cache) for rows in written)
    stats = BlockStats(lines * length, nnz, lines, nz_lines, length, rle)
    return operand_bytes(hw.activation_format, stats, hw.element_bytes)


def _groups_touched(layer: LayerCapture, phase: int, channels: torch.Tensor, ka: int, na: int,
                    groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Grouped convolution: the share of the stream operand's groups each channel block
    needs, and which set of groups that is (a number per set): a tile whose channels need
    other groups needs another part of the stream block, though its stream block is the
    tile before's (a depthwise conv's next channels had been taken as holding their input)."""
    if groups == 1:
        return np.ones(na), np.zeros(na, np.int64)
    a_total = layer.x_nz.shape[1] if phase == BP else layer.w_nz.shape[0]
    group_of = (channels * groups) // a_total
    padded = torch.nn.functional.pad(group_of, (0, na * ka - len(channels)), value=-1)
    hit = torch.zeros(na, groups + 1, dtype=torch.bool)
    hit.scatter_(1, padded.reshape(na, ka) + 1, True)
    _, sets = np.unique(hit[:, 1:].numpy(), axis=0, return_inverse=True)
    return hit[:, 1:].sum(1).numpy() / groups, sets.reshape(-1)


def _window_sums(per_row: torch.Tensor, i0: np.ndarray, i1: np.ndarray, h0: np.ndarray,
                 h1: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """Sums of a (images, rows) array over [i0, i1) x [h0, h1), by 2-D prefix sums (kept
    in `cache`: every tile shape of a chunk reads the same array)."""
    def made() -> np.ndarray:
        prefix = np.zeros((per_row.shape[0] + 1, per_row.shape[1] + 1), np.int64)
        prefix[1:, 1:] = per_row.cumsum(0).cumsum(1).numpy()
        prefix.flags.writeable = False
        return prefix
    prefix = _kept(cache, ("prefix", id(per_row)), per_row, made)
    return prefix[i1, h1] - prefix[i0, h1] - prefix[i1, h0] + prefix[i0, h0]


def _wg_out_bytes(layer: LayerCapture, channels: torch.Tensor, shape: TileShape,
                  hw: HardwareView, cache: dict | None = None) -> np.ndarray:
    """Bytes of the kept weights' gradients of each tile, in the weight format: each tile's
    kernels (its channels' rows of input channels) summed from `_kernel_stats`."""
    k, cg, r, s = layer.w_nz.shape
    kernels = _kept(cache, ("kernels", id(layer), id(channels)), (layer, channels),
                    lambda: _kernel_stats(layer.w_nz[channels], hw.weight_format))
    nnz = _per_tile_total(kernels[0], shape, cache)
    # (a linear layer's kernels are one weight: their rows with any are their non-zeros)
    nz_lines = (nnz.copy() if kernels[1] is kernels[0]
                else _per_tile_total(kernels[1], shape, cache))
    rle = np.zeros_like(nnz) if kernels[2] is None else _per_tile_total(kernels[2], shape, cache)
    in_block = _block_sums(np.ones(len(channels), np.int64), shape.ka)[:, None]
    _, _, r0, r1 = _blocks(shape, 1, cg)
    elems = in_block * (r1 - r0) * r * s
    lines, line_len = elems // s, s
    if _matrix_rows(hw):  # a row: a channel's W
        lines, line_len = in_block * (r1 > r0), min(shape.rows, cg) * r * s
    return operand_bytes(hw.weight_format, BlockStats(elems, nnz, lines, nz_lines, line_len,
                                                      rle), hw.element_bytes)


def _kernel_stats(w: torch.Tensor, fmt: str) -> tuple[torch.Tensor | None, ...]:
    """Of a weight map (A, C/g, R, S), per kernel as a count map (A, 1, C/g, 1): its
    non-zeros, its kernel rows with any, and its run-length padding entries in format
    `fmt` (None unless run-length coding, the only format that reads them). Kept small: a
    kernel of one weight (a linear layer's) is the map itself, bool, and wider ones count
    in int32 (VGG-16's classifier WG had taken 2.5 GB of int64 maps here)."""
    a, cg, r, s = w.shape
    if r * s == 1:
        nnz = lines = w.reshape(a, 1, cg, 1)
    else:  # from each kernel row's non-zeros (torch's `any` over them took longer)
        per_row = w.sum(3, dtype=torch.int32)
        nnz = per_row.sum(2, dtype=torch.int32).reshape(a, 1, cg, 1)
        lines = (per_row > 0).sum(2, dtype=torch.int32).reshape(a, 1, cg, 1)
    rle = rle_padding(w.reshape(-1, r * s)).reshape(a, 1, cg, 1) if fmt == "rle" else None
    return nnz, lines, rle
