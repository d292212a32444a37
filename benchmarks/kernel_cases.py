"""Benchmark cases for `desim bench`: one pipeline pattern, built four ways.

The pattern is what the accelerator models do all day: a source feeds N stages through bounded
queues; each stage takes an item, holds a shared resource (a link) for a fixed time, and passes
the item on; a sink drains the last queue. One *transaction* is one item crossing one stage (a
held link), so a run of `items` items through `stages` stages is items * stages transactions.

- `raw_simpy`: plain SimPy (`Store`, `Resource`, `timeout`): the floor desim is measured against.
- `desim_pipeline(tracing=False)`: the same with desim's kernel (`Fifo`, `Link` +
  `hold_links`, `Module` processes) as shipped, tracing hooks present but off.
- `desim_pipeline(tracing=True)`: the same with tracing on, trace and VCD written.
- `desim_unhooked`: the same kernel with the tracing hooks cut out (a FIFO subclass and a copy
  of `hold_links` without the `if tracer` tests): the "build without hooks" that the cost of
  the hooks when off is measured against. `_unhooked_hold_links` orders, takes and holds the
  links as `desim.channels.hold_links` does (keep those few lines in step) and counts the
  transfer with the same `release_links`.

Each case builds its system, runs it, and returns the number of transactions it carried (the
bench checks they agree). Building is timed too: it is part of what a user pays per run, and is
small next to the run.

The memory cases put N transactions in flight at once and return the bytes each costs.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import simpy

from desim.channels import Fifo, Link, _check_transfer, hold_links, release_links
from desim.clock import PS_PER_S, transfer_ps
from desim.module import Module, Simulator

HOLD_PS = 1_000          # each stage holds its link this long per item
ITEM_BYTES = 1_000       # so the link's bandwidth is ITEM_BYTES per HOLD_PS
QUEUE_CAPACITY = 4
LINK_BYTES_PER_S = ITEM_BYTES * PS_PER_S // HOLD_PS


def raw_simpy(items: int, stages: int) -> int:
    env = simpy.Environment()
    stores = [simpy.Store(env, capacity=QUEUE_CAPACITY) for _ in range(stages + 1)]
    links = [simpy.Resource(env, capacity=1) for _ in range(stages)]

    def source() -> Generator:
        for i in range(items):
            yield stores[0].put(i)

    def stage(k: int) -> Generator:
        store_in, store_out, link = stores[k], stores[k + 1], links[k]
        while True:
            item = yield store_in.get()
            request = link.request()
            yield request
            yield env.timeout(HOLD_PS)
            link.release(request)
            yield store_out.put(item)

    def sink() -> Generator:
        for _ in range(items):
            yield stores[-1].get()

    env.process(source())
    for k in range(stages):
        env.process(stage(k))
    env.process(sink())
    env.run()
    assert env.now >= items * HOLD_PS
    return items * stages


class _Pipeline(Module):
    """The desim version: queues q0..qN and links l0..l(N-1) as child modules."""

    def __init__(self, sim: Simulator, items: int, stages: int,
                 fifo: type[Fifo] = Fifo, hold: Callable[..., Generator] | None = None) -> None:
        super().__init__("top", sim)
        self.items = items
        self.hold = hold or hold_links
        self.queues = [fifo(f"q{k}", self, QUEUE_CAPACITY) for k in range(stages + 1)]
        self.links = [Link(f"l{k}", self, LINK_BYTES_PER_S, 0) for k in range(stages)]
        self.add_process(self.source)
        for k in range(stages):
            self.add_process(self.stage, self.queues[k], self.queues[k + 1], self.links[k],
                             daemon=True)
        self.add_process(self.sink)

    def source(self) -> Generator:
        q = self.queues[0]
        for i in range(self.items):
            yield from q.put(i)

    def stage(self, q_in: Fifo, q_out: Fifo, link: Link) -> Generator:
        hold, route, nbytes = self.hold, [link], [ITEM_BYTES]
        while True:
            item = yield from q_in.get()
            yield from hold(route, nbytes)
            yield from q_out.put(item)

    def sink(self) -> Generator:
        q = self.queues[-1]
        for _ in range(self.items):
            yield from q.get()


def desim_pipeline(items: int, stages: int, tracing: bool = False) -> int:
    sim = Simulator()
    top = _Pipeline(sim, items, stages)
    if not tracing:
        sim.run()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sim.enable_tracing(Path(tmp) / "trace.json", Path(tmp) / "waves.vcd")
            sim.run()
            sim.finish_tracing()
    assert sim.now_ps >= items * HOLD_PS
    return sum(link.actions["transfers"] for link in top.links)


class _UnhookedFifo(Fifo):
    """`Fifo` without the tracing hook in `_set_depth`."""

    def _set_depth(self, depth: int) -> None:
        now = int(self.env.now)
        self.depth_time_ps[self.depth] += now - self._depth_since
        self._depth_since, self.depth = now, depth
        if depth == len(self.depth_time_ps):
            self.depth_time_ps.append(0)


def _unhooked_hold_links(links: Sequence[Link], nbytes: Sequence[int]) -> Generator:
    """`desim.channels.hold_links` (with its `_hold_in_order`) without the tracing hook."""
    if len(links) != len(nbytes):
        raise ValueError(f"hold_links: {len(links)} links but {len(nbytes)} byte counts")
    order: Sequence[int] = range(len(links))  # one link, the common case, needs no sorting
    if len(links) > 1:
        order = sorted(order, key=lambda i: links[i].path)
    links, nbytes = [links[i] for i in order], [int(nbytes[i]) for i in order]
    _check_transfer(links, nbytes)
    hold = max(map(transfer_ps, nbytes, [link.bytes_per_s for link in links]), default=0)
    return _unhooked_hold_in_order(links, nbytes, hold)


def _unhooked_hold_in_order(links: list[Link], nbytes: Sequence[int], hold: int) -> Generator:
    """`desim.channels._hold_in_order` without its tracing hook: the same taking and holding,
    the same `release_links` (which counts the transfer)."""
    if not links:
        return
    for link in links:
        wait = link.take()
        if wait is not None:
            yield wait
    if hold:
        yield links[0].env.timeout(hold)
    release_links(links, nbytes, hold)


def desim_unhooked(items: int, stages: int) -> int:
    sim = Simulator()
    top = _Pipeline(sim, items, stages, fifo=_UnhookedFifo, hold=_unhooked_hold_links)
    sim.run()
    return sum(link.actions["transfers"] for link in top.links)


# -- memory ---------------------------------------------------------------------------------

def _bytes_per(n: int, build: Callable[[], object]) -> float:
    """Peak traced memory of `build()` (which keeps n transactions pending), per transaction."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        keep = build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del keep
    return (peak - base) / n


PAYLOAD = object()  # one shared item, so only the kernel's own cost is measured


def simpy_queued_bytes(n: int) -> float:
    """n items sitting in a Store."""
    def build() -> object:
        env = simpy.Environment()
        store = simpy.Store(env, capacity=n)

        def producer() -> Generator:
            for _ in range(n):
                yield store.put(PAYLOAD)

        env.process(producer())
        env.run()
        return env, store
    return _bytes_per(n, build)


def desim_queued_bytes(n: int) -> float:
    """n items sitting in a Fifo."""
    def build() -> object:
        sim = Simulator()
        top = Module("top", sim)
        fifo = Fifo("q", top, capacity=n)

        def producer() -> Generator:
            for _ in range(n):
                yield from fifo.put(PAYLOAD)

        top.add_process(producer)
        sim.run()
        return sim
    return _bytes_per(n, build)


def simpy_blocked_bytes(n: int) -> float:
    """n producer processes, each blocked putting one item into a full Store."""
    def build() -> object:
        env = simpy.Environment()
        store = simpy.Store(env, capacity=1)
        store.items.append(PAYLOAD)

        def producer() -> Generator:
            yield store.put(PAYLOAD)

        for _ in range(n):
            env.process(producer())
        env.run(until=1)
        return env
    return _bytes_per(n, build)


def desim_blocked_bytes(n: int) -> float:
    """n module processes, each blocked putting one item into a full Fifo."""
    def build() -> object:
        sim = Simulator()
        top = Module("top", sim)
        fifo = Fifo("q", top, capacity=1)
        fifo.store.items.append(PAYLOAD)

        def producer() -> Generator:
            yield from fifo.put(PAYLOAD)

        for _ in range(n):
            top.add_process(producer)
        sim.run(until=1)
        return sim
    return _bytes_per(n, build)


TIMED_CASES: dict[str, Callable[[int, int], int]] = {
    "simpy": raw_simpy,
    "desim": desim_pipeline,
    "desim_again": desim_pipeline,  # the same case twice: the noise of a comparison (A/A)
    "desim_unhooked": desim_unhooked,
    "desim_traced": lambda items, stages: desim_pipeline(items, stages, tracing=True),
}

MEMORY_CASES: dict[str, Callable[[int], float]] = {
    "simpy_queued": simpy_queued_bytes,
    "desim_queued": desim_queued_bytes,
    "simpy_blocked": simpy_blocked_bytes,
    "desim_blocked": desim_blocked_bytes,
}
