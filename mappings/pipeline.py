"""The mapper's estimate of how long a sequence of tiles takes in the tile pipeline.

The accelerator runs tiles through stages in order (arch/accelerator.py: fetch from DRAM,
send over the NoC, compute, gather, write back), each stage one tile at a time, two-deep
buffers between them. With many tiles the stages overlap and the busiest stage sets the
time; one tile overlaps nothing and takes the sum of its stages. An estimate that took the
busiest stage alone would think one large tile as fast as many small ones, and a larger
buffer (fewer, larger tiles) could then make a design slower by the mapper's own choice.
"""

from __future__ import annotations

import numpy as np


def pipelined_cycles(times: np.ndarray) -> float:
    """Tiles (rows) through stages (columns), `times[i, s]` cycles: each tile as long as its
    busiest stage, the others hidden under it, plus the first tile's other stages (the
    pipeline's fill and drain). For equal tiles this is the flow shop's makespan
    (`equal_tiles_cycles`); for unequal ones it is longer than a flow shop with unbounded
    queues, as the accelerator's two-deep buffers are: they cannot hold back a queue of
    light tiles to hide under a heavy one."""
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return 0.0
    first = times[0]
    return float(times.max(axis=1).sum() + first.sum() - first.max())


def equal_tiles_cycles(stage_cycles: list[float], tiles: int) -> float:
    """The makespan of `tiles` equal tiles sharing each stage's total (`stage_cycles`): the
    busiest stage's total plus the others' share of one tile, the fill and drain."""
    busiest = max(stage_cycles)
    return busiest + (sum(stage_cycles) - busiest) / max(tiles, 1)
