"""CPU threads for torch, by the kind of work.

Counting (non-zero maps and their runs, MAC counts per tile, their sums) is exact in any
order: integer arithmetic, and float32 convolutions of 0/1 maps, exact below 2**24
(`mappings.counting`). So it may use every thread torch was given without changing a
number. A model's own forward and backward passes are float arithmetic whose summation
order, hence whose bits, can depend on the thread count: the runner keeps them on one
thread (`desim.runner.run`), and counting borrows the others while it runs.

Threads that wait for work sleep (`OMP_WAIT_POLICY=PASSIVE`, set by `desim` and `mappings`
before torch loads; the user's own setting wins). OpenMP's default lets them spin, and a
spinning thread takes a core that another process wants: on 2 cores with two other busy
processes, counting ResNet-18 ImageNet's maps (batch 1) took 15.6 to 20.5 s with 2 spinning
threads, 1.3 to 1.9 s with 2 sleeping ones and 1.1 to 2.6 s with one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# torch's own default, read before anything lowers it: the CPUs it may use, or
# OMP_NUM_THREADS where that is set (a Dask nanny sets it to 1 in a sweep's workers, which
# have one thread each).
_counting = max(1, torch.get_num_threads())


def set_counting_threads(n: int) -> int:
    """How many threads counting uses from now on; returns how many it used before."""
    global _counting
    before, _counting = _counting, max(1, n)
    return before


@contextmanager
def counting_threads() -> Iterator[None]:
    """Run the block's (exact) counting on the counting threads, then restore the caller's."""
    before = torch.get_num_threads()
    if before == _counting:
        yield
        return
    torch.set_num_threads(_counting)
    try:
        yield
    finally:
        torch.set_num_threads(before)
