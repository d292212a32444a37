"""The mapper's estimates of how long a sequence of tiles takes in the tile pipeline.

The accelerator runs tiles through stages in order (arch/accelerator.py: fetch from DRAM,
send over the NoC, compute, gather, write back), each stage one tile at a time, two-deep
buffers between them. With many tiles the stages overlap and the busiest stage sets the
time; one tile overlaps nothing and takes the sum of its stages. An estimate that took the
busiest stage alone would think one large tile as fast as many small ones, and a larger
buffer (fewer, larger tiles) could then make a design slower by the mapper's own choice.
`buffered_cycles` follows a plan's tiles through the stages one by one, as the accelerator
runs them; `equal_tiles_cycles` is its closed form for equal tiles, which the tile search
uses on every candidate shape.
"""

from __future__ import annotations

import numpy as np


def equal_tiles_cycles(stage_cycles: list[float], tiles: int) -> float:
    """The makespan of `tiles` equal tiles sharing each stage's total (`stage_cycles`): the
    busiest stage's total plus the others' share of one tile, the fill and drain (what
    `buffered_cycles` gives for equal tiles)."""
    busiest = max(stage_cycles)
    return busiest + (sum(stage_cycles) - busiest) / max(tiles, 1)


def buffered_cycles(times: np.ndarray, has_results: np.ndarray | None = None) -> float:
    """When the last of `times`' tiles leaves the pipeline (`buffered_schedule`)."""
    return buffered_schedule(times, has_results)[0]


def buffered_schedule(times: np.ndarray, has_results: np.ndarray | None = None,
                      gates: np.ndarray | None = None
                      ) -> tuple[float, list[float], list[float]]:
    """When the last of `times`' tiles leaves the pipeline as arch/accelerator.py runs it,
    and when each tile's fetch and write-back start (the order DRAM sees them in).
    Rows are tiles, columns the cycles of their five stages: fetch, distribute, compute,
    collect, write back. Each stage takes one tile at a time, in order. Between two stages a
    two-deep FIFO: a stage that finished a tile waits to pass it on until the next stage has
    started the tile two before it. A tile holds one of the global buffer's two operand
    halves from the start of its fetch to the end of its distribution, and a tile with
    results (`has_results`, default every tile) one of its two result halves from the start
    of its collection to the end of its write-back. DRAM's reads and writes are taken as
    independent here (the caller bounds the time by one channel serving both from the
    starts this returns: `planner.dram_busy_until`). `gates`, of a run of
    layer-phases: for each tile, the earlier tile whose write-back must end before it is
    fetched (a phase's first tile waits for the phases it needs, `mapper.phase_waits`), or
    -1.

    So it sees what depends on the buffers' depth: a heavy tile behind light ones that the
    NoC port holds up cannot fetch while they wait (there is no free half to fetch into),
    and its fetch adds to its distribution; each tile taken as long as its busiest stage,
    others hidden under it, would miss that."""
    rows = np.asarray(times, dtype=np.float64).tolist()
    holds = ([True] * len(rows) if has_results is None
             else np.asarray(has_results, dtype=bool).tolist())
    # per stage: when it may take its next tile (it passed its last on), and when it
    # started the last two tiles (the FIFO before it has room for a third once it has
    # started the first of them); when the halves come free, in order
    f_free = d_free = c_free = g_free = w_end = 0.0
    d_starts = c_starts = g_starts = w_starts = (0.0, 0.0)
    operand = result = (0.0, 0.0)
    waits = [-1] * len(rows) if gates is None else np.asarray(gates).tolist()
    fetches, writes, ends = [], [], []
    for (fetch, distribute, compute, collect, write), has, gate in zip(rows, holds, waits,
                                                                        strict=True):
        f0 = max(f_free, operand[0], ends[gate] if gate >= 0 else 0.0)
        fetches.append(f0)
        f_free = max(f0 + fetch, d_starts[0])
        d0 = max(f_free, d_free)
        operand = (operand[1], d0 + distribute)
        d_free = max(d0 + distribute, c_starts[0])
        c0 = max(d_free, c_free)
        c_free = max(c0 + compute, g_starts[0])
        g_get = max(c_free, g_free)   # it takes the tile, then waits for a result half
        g0 = max(g_get, result[0]) if has else g_get
        g_free = max(g0 + collect, w_starts[0])
        w0 = max(g_free, w_end)
        writes.append(w0)
        w_end = w0 + write
        ends.append(w_end)
        if has:
            result = (result[1], w_end)
        d_starts, c_starts = (d_starts[1], d0), (c_starts[1], c0)
        g_starts, w_starts = (g_starts[1], g_get), (w_starts[1], w0)
    return w_end, fetches, writes
