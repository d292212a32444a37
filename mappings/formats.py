"""Compressed formats: the bytes an operand block takes in DRAM and on the network.

- dense: every element.
- bitmap: the non-zero values plus one bit per element (a presence map).
- line_bitmap: HPPU's hybrid-pruned weights: the values of the kept kernel lines (a line is a
  1xS row of a kernel, stored whole) plus one bit per line. Channel-pruned channels are lines
  too, all absent.
Metadata bits are rounded up to whole bytes per block.
"""

from __future__ import annotations

import numpy as np

FORMATS = ("dense", "bitmap", "line_bitmap")


def operand_bytes(fmt: str, elems: np.ndarray, nnz: np.ndarray, lines: np.ndarray,
                  nz_lines: np.ndarray, line_len: int, element_bytes: int) -> np.ndarray:
    """Bytes of each block (arrays of per-block counts) in format `fmt`."""
    elems, nnz = np.asarray(elems, np.int64), np.asarray(nnz, np.int64)
    if fmt == "dense":
        return elems * element_bytes
    if fmt == "bitmap":
        return nnz * element_bytes + -(-elems // 8)
    if fmt == "line_bitmap":
        lines, nz_lines = np.asarray(lines, np.int64), np.asarray(nz_lines, np.int64)
        return nz_lines * line_len * element_bytes + -(-lines // 8)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
