"""Benchmark cases for `desim bench`: one pipeline pattern, built several ways.

The pattern is what the accelerator models do all day: a source feeds N stages through bounded
queues; each stage takes an item, holds a resource of its own (a link) for a fixed time, and
passes the item on; a sink drains the last queue. One *transaction* is one item crossing one
stage (a held link), so a run of `items` items through `stages` stages is items * stages
transactions.

- `raw_simpy`: plain SimPy doing the events desim does: `Store` puts and gets and one
  `timeout` a transaction, the link a flag that a transfer sets (and an event to wait on
  only when it is held, as desim's `Link`): the floor desim is measured against.
- `simpy_resource`: plain SimPy as one would write it, the link a `Resource`: a request and
  a release event more per transaction (5.5 events where desim schedules 3.5). Not the same
  events, so no target; shown for what idiomatic SimPy costs.
- `desim_pipeline(tracing=False)`: the pattern with desim's kernel (`Fifo`, `Link` +
  `hold_links`, `Module` processes) as shipped, tracing hooks present but off.
- `desim_pipeline(tracing=True)`: the same with tracing on, trace and VCD written.
- `desim_unhooked`: the same kernel with the tracing hooks cut out (a FIFO subclass and a copy
  of `hold_links` without the `if tracer` tests): the "build without hooks" that the cost of
  the hooks when off is measured against. `_unhooked_hold_links` orders, takes and holds the
  links as `desim.channels.hold_links` does (keep those few lines in step) and counts the
  transfer with the same `release_links`.
- `desim_timed` (twice, A/A) / `desim_timed_unhooked`: the pattern with timed components in place of
  links, each stage taking a unit of a `Pool` (capacity 1), spending the time with
  `Module.busy_for` (which calls `Module.traced`) and giving the unit back: the other tracing
  hooks, with and without them (`_UnhookedPool`, `_unhooked_busy_for`: copies of
  `Pool.take`/`give` and `Module.busy_for` without the hook; keep them in step too).

Each case builds its system, runs it, and returns what it did (`Work`): the transactions its
stages completed and the items its sink received, counted as they happen, the simulated time
at the end and the events SimPy scheduled (its event-id counter): the bench checks that every
case did the same work, and reports the events each scheduled. Building is timed too: it is
part of what a user pays per run, and is small next to the run.

The memory cases put N transactions in flight at once and return the bytes each costs, net of
the same system with none in flight (so a FIFO's own fixed cost, which grows with its
capacity, is not charged to the items in it).
"""

from __future__ import annotations

import tempfile
import tracemalloc
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy

from desim.channels import Fifo, Link, Pool, _check_transfer, hold_links, release_links
from desim.clock import PS_PER_S, transfer_ps
from desim.errors import ConfigError
from desim.module import Module, Simulator

HOLD_PS = 1_000          # each stage holds its link this long per item
ITEM_BYTES = 1_000       # so the link's bandwidth is ITEM_BYTES per HOLD_PS
QUEUE_CAPACITY = 4
LINK_BYTES_PER_S = ITEM_BYTES * PS_PER_S // HOLD_PS


@dataclass(frozen=True)
class Work:
    """What one timed case did."""

    transactions: int   # stage transactions completed (links held and let go), counted
    delivered: int      # items the sink received
    end_ps: int         # simulated time at the end
    events: int         # events SimPy scheduled (its event-id counter)

    def same_work(self) -> tuple[int, int, int]:
        """What every case must agree on (the events may differ: that is what is compared)."""
        return self.transactions, self.delivered, self.end_ps


def scheduled_events(env: simpy.Environment) -> int:
    """Events `env` has scheduled so far: SimPy numbers each one it schedules from its
    `_eid` counter (reading it takes a number, harmless after the run)."""
    return next(env._eid)


class _FlagLink:
    """A link for plain SimPy held as desim's `Link` is: a flag the transfer sets when it is
    free (no event), an event to wait on only when another transfer holds it."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.holder: simpy.Process | None = None
        self.waiting: deque[simpy.Event] = deque()

    def take(self) -> simpy.Event | None:
        if self.holder is None:
            self.holder = self.env.active_process
            return None
        wait = self.env.event()
        self.waiting.append(wait)
        return wait

    def give(self) -> None:
        if self.waiting:
            self.waiting.popleft().succeed()  # the waiter holds it now
        else:
            self.holder = None


def raw_simpy(items: int, stages: int) -> Work:
    """The floor: plain SimPy scheduling the events desim schedules (Store puts and gets, one
    timeout a transaction; a free link costs no event)."""
    def stage(env: simpy.Environment, store_in: simpy.Store, store_out: simpy.Store,
              link: _FlagLink, done: list[int], k: int) -> Generator:
        while True:
            item = yield store_in.get()
            wait = link.take()
            if wait is not None:
                yield wait
            yield env.timeout(HOLD_PS)
            link.give()
            done[k] += 1
            yield store_out.put(item)

    return _simpy_pipeline(items, stages, _FlagLink, stage)


def simpy_with_resource(items: int, stages: int) -> Work:
    """Plain SimPy as usually written: each link a `Resource` (a request and a release event
    more per transaction than desim schedules)."""
    def stage(env: simpy.Environment, store_in: simpy.Store, store_out: simpy.Store,
              link: simpy.Resource, done: list[int], k: int) -> Generator:
        while True:
            item = yield store_in.get()
            request = link.request()
            yield request
            yield env.timeout(HOLD_PS)
            link.release(request)
            done[k] += 1
            yield store_out.put(item)

    return _simpy_pipeline(items, stages, lambda env: simpy.Resource(env, capacity=1), stage)


def _simpy_pipeline(items: int, stages: int, make_link: Callable[[simpy.Environment], Any],
                    stage: Callable[..., Generator]) -> Work:
    """A source, `stages` stages (each its queue in, its link and its queue out) and a sink,
    in plain SimPy; each stage loops in its own generator, as written by the caller (the
    loop is what is timed: no call of ours between its events)."""
    env = simpy.Environment()
    stores = [simpy.Store(env, capacity=QUEUE_CAPACITY) for _ in range(stages + 1)]
    links = [make_link(env) for _ in range(stages)]
    done = [0] * stages
    received = [0]

    def source() -> Generator:
        for i in range(items):
            yield stores[0].put(i)

    def sink() -> Generator:
        for _ in range(items):
            yield stores[-1].get()
            received[0] += 1

    env.process(source())
    for k in range(stages):
        env.process(stage(env, stores[k], stores[k + 1], links[k], done, k))
    env.process(sink())
    env.run()
    return Work(sum(done), received[0], int(env.now), scheduled_events(env))


class _Pipeline(Module):
    """The desim version: queues q0..qN and links l0..l(N-1) as child modules."""

    def __init__(self, sim: Simulator, items: int, stages: int,
                 fifo: type[Fifo] = Fifo, hold: Callable[..., Generator] | None = None) -> None:
        super().__init__("top", sim)
        self.items = items
        self.received = 0
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
            self.received += 1

    def work(self) -> Work:
        return Work(sum(link.actions["transfers"] for link in self.links), self.received,
                    self.sim.now_ps, scheduled_events(self.env))


def desim_pipeline(items: int, stages: int, tracing: bool = False) -> Work:
    sim = Simulator()
    top = _Pipeline(sim, items, stages)
    if not tracing:
        sim.run()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sim.enable_tracing(Path(tmp) / "trace.json", Path(tmp) / "waves.vcd")
            sim.run()
            sim.finish_tracing()
    return top.work()


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
    if len(links) == 1:
        link, b = links[0], int(nbytes[0])
        if b < 0:
            _check_transfer([link], [b])
        return _unhooked_hold_in_order([link], [b], transfer_ps(b, link.bytes_per_s))
    order = sorted(range(len(links)), key=lambda i: links[i].path)
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


def desim_unhooked(items: int, stages: int) -> Work:
    sim = Simulator()
    top = _Pipeline(sim, items, stages, fifo=_UnhookedFifo, hold=_unhooked_hold_links)
    sim.run()
    return top.work()


# -- the timed-component pattern: Pool, Module.busy_for ------------------------------------

class _Unit(Module):
    """A timed component: it spends HOLD_PS on each item (`Module.busy_for`)."""

    def work_on(self) -> Generator:
        yield from self.busy_for(HOLD_PS, "item")


class _UnhookedUnit(_Unit):
    def work_on(self) -> Generator:
        yield from _unhooked_busy_for(self, HOLD_PS)


def _unhooked_busy_for(module: Module, duration_ps: int) -> Generator:
    """`desim.module.Module.busy_for` without its tracing hook (`Module.traced`)."""
    if duration_ps <= 0:
        return
    yield module.env.timeout(duration_ps)
    module.busy_ps += duration_ps
    module.sim.book()[module.path]["busy_ps"] += duration_ps


class _UnhookedPool(Pool):
    """`Pool` without the tracing hook (`if self.tracer: self._trace_in_use()`) in `take`
    and `give`."""

    def take(self, amount: int) -> Generator:
        if amount > self.container.capacity:
            raise ConfigError(f"{self.path}: request of {amount} exceeds capacity "
                             f"{self.container.capacity}")
        asked = int(self.env.now)
        yield self.container.get(amount)
        self.count("take")
        if self.env.now > asked:
            self.count("wait_ps", int(self.env.now) - asked)

    def give(self, amount: int) -> Generator:
        if amount > self.in_use:  # (Pool.give's check: not the hook's cost)
            raise ValueError(f"{self.path}: give of {amount} but only {self.in_use} in use "
                             "(give back what was taken)")
        yield self.container.put(amount)
        self.count("give")


class _TimedPipeline(_Pipeline):
    """The pattern with a timed component and a one-unit pool in place of each link."""

    def __init__(self, sim: Simulator, items: int, stages: int, hooks: bool = True) -> None:
        Module.__init__(self, "top", sim)
        self.items = items
        self.received = 0
        fifo, unit, pool = (Fifo, _Unit, Pool) if hooks else \
            (_UnhookedFifo, _UnhookedUnit, _UnhookedPool)
        self.queues = [fifo(f"q{k}", self, QUEUE_CAPACITY) for k in range(stages + 1)]
        self.units = [unit(f"u{k}", self) for k in range(stages)]
        self.pools = [pool(f"p{k}", self, 1) for k in range(stages)]
        self.add_process(self.source)
        for k in range(stages):
            self.add_process(self.timed_stage, self.queues[k], self.queues[k + 1],
                             self.units[k], self.pools[k], daemon=True)
        self.add_process(self.sink)

    def timed_stage(self, q_in: Fifo, q_out: Fifo, unit: _Unit, pool: Pool) -> Generator:
        while True:
            item = yield from q_in.get()
            yield from pool.take(1)
            yield from unit.work_on()
            yield from pool.give(1)
            yield from q_out.put(item)

    def work(self) -> Work:
        return Work(sum(unit.busy_ps for unit in self.units) // HOLD_PS, self.received,
                    self.sim.now_ps, scheduled_events(self.env))


def desim_timed(items: int, stages: int) -> Work:
    sim = Simulator()
    top = _TimedPipeline(sim, items, stages)
    sim.run()
    return top.work()


def desim_timed_unhooked(items: int, stages: int) -> Work:
    sim = Simulator()
    top = _TimedPipeline(sim, items, stages, hooks=False)
    sim.run()
    return top.work()


# -- memory ---------------------------------------------------------------------------------

def _peak_bytes(build: Callable[[], object]) -> int:
    """Peak traced memory of `build()` above what was traced before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        keep = build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del keep
    return peak - base


def _bytes_per(n: int, build: Callable[[int], object]) -> float:
    """Bytes per pending transaction: the peak of `build(n)` (which keeps n transactions
    pending) less that of `build(0)` (the same system, none pending), over n. What the system
    costs with nothing in it (a FIFO's depth histogram, sized by its capacity) is not the
    transactions' cost."""
    return (_peak_bytes(lambda: build(n)) - _peak_bytes(lambda: build(0))) / n


PAYLOAD = object()  # one shared item, so only the kernel's own cost is measured


def simpy_queued_bytes(n: int) -> float:
    """n items sitting in a Store of capacity n, net of that Store empty."""
    def build(pending: int) -> object:
        env = simpy.Environment()
        store = simpy.Store(env, capacity=n)

        def producer() -> Generator:
            for _ in range(pending):
                yield store.put(PAYLOAD)

        env.process(producer())
        env.run()
        return env, store
    return _bytes_per(n, build)


def desim_queued_bytes(n: int, capacity: int | None = None) -> float:
    """n items sitting in a Fifo of `capacity` (n unless given), net of that Fifo empty."""
    def build(pending: int) -> object:
        sim = Simulator()
        top = Module("top", sim)
        fifo = Fifo("q", top, capacity=capacity or n)

        def producer() -> Generator:
            for _ in range(pending):
                yield from fifo.put(PAYLOAD)

        top.add_process(producer)
        sim.run()
        return sim
    return _bytes_per(n, build)


def simpy_blocked_bytes(n: int) -> float:
    """n producer processes, each blocked putting one item into a full Store."""
    def build(pending: int) -> object:
        env = simpy.Environment()
        store = simpy.Store(env, capacity=1)
        store.items.append(PAYLOAD)

        def producer() -> Generator:
            yield store.put(PAYLOAD)

        for _ in range(pending):
            env.process(producer())
        env.run(until=1)
        return env
    return _bytes_per(n, build)


def desim_blocked_bytes(n: int) -> float:
    """n module processes, each blocked putting one item into a full Fifo."""
    def build(pending: int) -> object:
        sim = Simulator()
        top = Module("top", sim)
        fifo = Fifo("q", top, capacity=1)
        fifo.store.items.append(PAYLOAD)

        def producer() -> Generator:
            yield from fifo.put(PAYLOAD)

        for _ in range(pending):
            top.add_process(producer)
        sim.run(until=1)
        return sim
    return _bytes_per(n, build)


TIMED_CASES: dict[str, Callable[[int, int], Work]] = {
    "simpy": raw_simpy,
    "simpy_resource": simpy_with_resource,
    "desim": desim_pipeline,
    "desim_again": desim_pipeline,  # the same case twice: the noise of a comparison (A/A)
    "desim_unhooked": desim_unhooked,
    "desim_traced": lambda items, stages: desim_pipeline(items, stages, tracing=True),
    "desim_timed": desim_timed,
    "desim_timed_again": desim_timed,  # the noise of that pattern's comparison (A/A)
    "desim_timed_unhooked": desim_timed_unhooked,
}

# What each case is, for the bench's table.
CASE_LABELS = {
    "simpy": "plain SimPy, the same events as desim (floor)",
    "simpy_resource": "plain SimPy, each link a Resource",
    "desim": "desim, tracing hooks off",
    "desim_again": "desim again (A/A: this run's noise)",
    "desim_unhooked": "desim, hooks cut out",
    "desim_traced": "desim, tracing on, files written",
    "desim_timed": "desim, Pool + busy_for stages, hooks off",
    "desim_timed_again": "desim, Pool + busy_for stages, again (A/A)",
    "desim_timed_unhooked": "desim, Pool + busy_for stages, hooks cut out",
}

MEMORY_CASES: dict[str, Callable[[int], float]] = {
    "simpy_queued": simpy_queued_bytes,
    "desim_queued": desim_queued_bytes,
    "simpy_blocked": simpy_blocked_bytes,
    "desim_blocked": desim_blocked_bytes,
}
