"""Compressed formats: the bytes an operand block takes in DRAM and on the network.

A block is seen as a matrix of `lines` rows of `line_len` elements (for weights a kernel row,
or for csr and csc by default a row of the weight matrix, an output channel's C*R*S weights in FF;
a feature-map row for activations); its bytes, metadata included:

- dense: every element.
- bitmap: the non-zero values plus one presence bit per element.
- line_bitmap: HPPU's hybrid-pruned weights: the values of the kept lines (stored whole) plus
  one bit per line. A channel-pruned channel is lines too, all absent.
- csr: non-zero values with a column index each, plus a pointer per row (+1).
- csc: the same by columns: an index per value, a pointer per column (+1).
- coo: every non-zero with its row and column index.
- rle: run-length coding as in EIE (Han et al., ISCA 2016): each non-zero carries the count
  of zeros before it in a 4-bit field; a run longer than 15 needs a padding entry (a stored
  zero) for every 16 zeros. Runs restart at each unit (a channel's data, a feature-map row).
- values_only: the non-zero values and nothing else, for weights whose positions follow from
  their structure: PermDNN's permuted-diagonal blocks (Deng et al., MICRO 2018) keep one
  weight per row and column of a p x p block at a known offset, so no index is stored. (The
  offset itself, log2(p) bits per p x p block, is left out.)

Index and pointer widths are fixed here (16-bit indices, 32-bit pointers); metadata bits are
rounded up to whole bytes per block. A value takes `element_bytes` bytes unless `value_bits`
says otherwise (2 for ternary codes): the values of a block then take ceil(values * bits / 8)
bytes, so dense ternary weights take ceil(2 n / 8) bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FORMATS = ("dense", "bitmap", "line_bitmap", "csr", "csc", "coo", "rle", "values_only")
INDEX_BYTES = 2
POINTER_BYTES = 4
RLE_RUN_BITS = 4


@dataclass
class BlockStats:
    """Per-block counts (arrays, one entry per block) that every format's size derives from."""

    elems: np.ndarray
    nnz: np.ndarray
    lines: np.ndarray
    nz_lines: np.ndarray
    line_len: int
    rle_padding: np.ndarray | None  # padding entries run-length coding needs (None: not
                                    # counted, `map_stats`)


def operand_bytes(fmt: str, b: BlockStats, element_bytes: int,
                  value_bits: int | None = None) -> np.ndarray:
    """Bytes of each block in format `fmt`; a value takes `value_bits` bits (default: the
    element's 8 * element_bytes), metadata as above."""
    bits = 8 * element_bytes if value_bits is None else value_bits

    def values(count: np.ndarray) -> np.ndarray:  # bytes of `count` values, rounded up
        return -(-np.asarray(count, np.int64) * bits // 8)

    nnz = np.asarray(b.nnz, np.int64)
    if fmt == "dense":
        return values(b.elems)
    if fmt == "bitmap":
        return values(nnz) + -(-np.asarray(b.elems, np.int64) // 8)
    if fmt == "line_bitmap":
        return (values(np.asarray(b.nz_lines, np.int64) * b.line_len)
                + -(-np.asarray(b.lines, np.int64) // 8))
    if fmt == "csr":
        return values(nnz) + nnz * INDEX_BYTES + (np.asarray(b.lines) + 1) * POINTER_BYTES
    if fmt == "csc":
        return values(nnz) + nnz * INDEX_BYTES + (b.line_len + 1) * POINTER_BYTES
    if fmt == "coo":
        return values(nnz) + nnz * 2 * INDEX_BYTES
    if fmt == "rle":
        if b.rle_padding is None:
            raise ValueError("run-length coding's padding was not counted for these blocks")
        entries = nnz + np.asarray(b.rle_padding, np.int64)
        return -(-entries * (bits + RLE_RUN_BITS) // 8)
    if fmt == "values_only":
        return values(nnz)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def rle_padding(nz: torch.Tensor, nonzeros: int | None = None) -> torch.Tensor:
    """Padding entries per unit (first dim) for run-length coding of `nz` (units, length);
    `nonzeros`: nz's count of non-zeros, if the caller has it.

    A non-zero at position i after the previous one at j (or the unit's start, j = -1)
    follows i - j - 1 zeros, which need floor(zeros / 16) padding entries. Trailing zeros are
    not stored. Vectorized over the non-zeros alone (in order, unit by unit): each one's
    predecessor is the non-zero before it in the same unit. In numpy: its reductions of
    boolean maps are several times faster than torch's.
    """
    units, length = nz.shape
    max_run = 2**RLE_RUN_BITS
    if nonzeros is None:
        nonzeros = int(torch.count_nonzero(nz))
    if length <= max_run or nz.numel() - nonzeros < max_run:
        # no run of zeros is long enough to need padding (a unit is too short, or the map
        # has too few zeros: most batch-norm outputs and conv gradients have none)
        return torch.zeros(units, dtype=torch.int64)
    at = np.flatnonzero(nz.numpy())  # positions in the flattened map, unit by unit
    unit = at // length
    pos = at - unit * length
    before = np.empty_like(pos)
    before[:1] = -1
    before[1:] = np.where(unit[1:] == unit[:-1], pos[:-1], -1)
    padding = (pos - before - 1) // max_run
    padded = np.flatnonzero(padding)  # few: only runs of 16 zeros or more
    out = np.zeros(units, np.int64)
    np.add.at(out, unit[padded], padding[padded])
    return torch.from_numpy(out)


def map_stats(nz: torch.Tensor, rle: bool = True) -> BlockStats:
    """A whole non-zero map as one block, its lines the runs along its last dimension (a
    feature map's rows). Counted in numpy (see `rle_padding`); without `rle`, its padding
    is not (None: a third of a capture's time, for a format few designs use)."""
    length = nz.shape[-1] if nz.dim() else 1
    lines = nz.reshape(-1, length)
    flat = lines.numpy()
    nonzeros = int(np.count_nonzero(flat))
    return BlockStats(np.array([nz.numel()]), np.array([nonzeros]), np.array([flat.shape[0]]),
                      np.array([int(np.count_nonzero(flat.any(1)))]), length,
                      np.array([int(rle_padding(lines, nonzeros).sum())]) if rle else None)
