"""The event table: the contract between the mapper (producer) and the hardware (consumer).

One row per tile of one phase of one layer, in the order the hardware runs them. Each row
carries what the tile moves and computes, counted exactly from the tensors; the hardware's
processes replay the rows, one timed transaction per transfer or computation, never per
element. A numpy structured array keeps it compact and lets totals be computed vectorized.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

T = TypeVar("T", int, np.ndarray)

# The phases of a training iteration; WU, the optimizer's weight update, only where the
# workload asks for one (`workload.weight_update`).
PHASES = ("FF", "BP", "WG", "WU")

TILE_DTYPE = np.dtype([
    ("layer", np.int32),             # index into the workload's layer list
    ("phase", np.int8),              # 0 FF, 1 BP, 2 WG
    ("dram_read_bytes", np.int64),   # operands fetched from DRAM for this tile...
    ("weight_read_bytes", np.int64),  # ...of which weights: no earlier phase writes them, so
                                      # a phase's first tile may fetch them before the
                                      # phases it waits for are written back
    ("dram_write_bytes", np.int64),  # results written back to DRAM
    ("glb_read_bytes", np.int64),    # global buffer reads of operands (to the clusters or
                                     # the vector unit); a write-back reads its DRAM bytes
    ("glb_write_bytes", np.int64),   # global buffer writes: DRAM fills and regenerated
                                     # weights, then results (gathered or the vector unit's)
    ("held_bytes", np.int64),        # global buffer bytes the tile takes: its operand
                                     # blocks as their formats store them (less one an
                                     # earlier phase left there) and its results' room
    ("multicast_bytes", np.int64),   # operand sent once to every active cluster
    ("unicast_bytes", np.int64),     # operand split among active clusters (sum over clusters)
    ("gather_bytes", np.int64),      # results returned by the clusters (sum over clusters)
    ("active_clusters", np.int32),
    ("dealt", np.int8),              # what the clusters were dealt: DEALT's index
    ("reduced_psums", np.int64),     # partial sums the global buffer adds into running sums
                                     # (a reduction dealt to the clusters)
    ("selector_entries", np.int64),  # entries the sparse-data selector scans
    ("regenerated_weights", np.int64),  # untracked weights regenerated from their PRNG seed
                                        # instead of read from DRAM (Procrustes)...
    ("regenerated_bytes", np.int64),    # ...and the bytes they fill in the global buffer
    ("speculated_ops", np.int64),    # exponent-only products of the ReLU speculation (Trainer)
    ("scanned_pairs", np.int64),     # operand pairs whose bitmaps the PEs' index matching
                                     # ANDs: the nominal pairs of the outputs they compute
    ("busiest_pe_macs", np.int64),   # MACs of the most loaded PE: the tile's compute time
    ("processed_macs", np.int64),    # MACs the PEs perform (energy)
    ("effectual_macs", np.int64),    # MACs with every operand non-zero (both needed)
    ("macs", np.int64),              # nominal MACs of the tile
    ("vector_ops", np.int64),        # element-wise work (batch norm, pooling...) on the
                                     # vector unit; a tile has vector ops or MACs, not both
    ("compute_cycles", np.int64),    # the tile's compute time when the PEs form a systolic
                                     # array (arch/systolic.py); unused otherwise
])


# What a tile's work is dealt to the clusters by (`mapping.partition`), the event table's
# `dealt`: its output channels (the stream operand multicast), its output rows (the channel
# operand multicast), or its reduction (both operands unicast, the partial sums added at
# the global buffer).
DEALT = ("channels", "rows", "reduction")


def empty_table(n: int) -> np.ndarray:
    return np.zeros(n, dtype=TILE_DTYPE)


def concat_tables(tables: list[np.ndarray]) -> np.ndarray:
    """Event tables end to end. Told their dtype, numpy's `concatenate` copies; left to find
    it, it promotes the fields' dtypes first, three times the copy's time (on a plan's few
    tiles, which the mapper joins thousands of times a run)."""
    return np.concatenate(tables, dtype=TILE_DTYPE)


def holds_result(gather_bytes: T, dram_write_bytes: T) -> T:
    """Whether a tile holds one of the global buffer's two result halves, from its
    collection to its write-back: it brings results back or writes any (a chunk of a split
    reduction whose partial sums stay in the PEs does neither). Of one row's values, as the
    accelerator runs it, or of a table's columns, as the mapper's estimate follows it."""
    return (gather_bytes > 0) | (dram_write_bytes > 0)


def holds_local_half(vector_ops: T) -> T:
    """Whether a tile holds one of the clusters' two local halves, from its distribution to
    the end of its compute: every tile the PEs compute, not a vector layer's (the vector
    unit's). Of one row's value or of a table's column, as `holds_result`."""
    return vector_ops == 0


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Split `total` (cycles, MACs) over tiles in proportion to `weights` (their MACs), as
    integers summing exactly to `total` (largest remainders); equal shares when every
    weight is 0."""
    weights = np.asarray(weights, dtype=np.float64)
    n = len(weights)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if weights.sum() <= 0:
        weights = np.ones(n)
    exact = weights / weights.sum() * total
    out = np.floor(exact).astype(np.int64)
    short = int(total - out.sum())   # (float rounding may overshoot by one)
    order = np.argsort(-(exact - out), kind="stable")
    if short > 0:
        out[order[:short]] += 1
    elif short < 0:
        out[order[short:]] -= 1
    return out
