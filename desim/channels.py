"""Channels between modules: bounded FIFO, bandwidth/latency link, capacity pool.

Each is a module, so it has a dotted name and counts its actions. The FIFO and the pool are
thin layers over SimPy (`Store`, `Container`). A link is held by one transfer at a time, the
others wait in request order; it is its own small lock rather than a SimPy `Resource` because
a routed transfer takes some twenty links a tile, and a free link taken or let go at once
costs no event (a `Resource` schedules one for each request and each release, most of a
training run's events).

A link's timing is that of a pipelined wire: a transfer of B bytes occupies the link for
B / bandwidth (serialization, during which no other transfer may use it), and its last byte
arrives `latency` after that. So one transfer over a free link takes latency + B / bandwidth,
and two transfers started together finish at latency + 2 B / bandwidth.

Tracing hooks (off unless `Simulator.enable_tracing`): a link records one slice per transfer
(its serialization, the time it is held), a FIFO each change of its depth, a pool each
change of the units in use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from itertools import pairwise
from numbers import Integral

import simpy

from desim.clock import finite_number, transfer_ps
from desim.errors import ConfigError
from desim.module import Module, path_of


class Fifo(Module):
    """A bounded first-in first-out queue; `put` blocks the producer while it is full."""

    def __init__(self, name: str, parent: Module, capacity: int) -> None:
        capacity = _whole_capacity(path_of(name, parent), capacity)  # (before joining the tree)
        super().__init__(name, parent)
        self.capacity = capacity
        self.store = simpy.Store(self.env, capacity=self.capacity)
        self.depth = 0                                         # items put and not yet got
        self._depth_since = 0
        # time spent at each depth, as deep as it has been (not one entry per possible depth:
        # a FIFO may be made deep enough never to fill)
        self.depth_time_ps: list[int] = [0]

    def put(self, item: object) -> Generator:
        yield self.store.put(item)
        self._set_depth(self.depth + 1)
        self.count("put")

    def get(self) -> Generator:
        item = yield self.store.get()
        self._set_depth(self.depth - 1)
        self.count("get")
        return item

    def _set_depth(self, depth: int) -> None:
        """Charge the time since the last change to the old depth (a time-weighted histogram)."""
        now = int(self.env.now)
        self.depth_time_ps[self.depth] += now - self._depth_since
        self._depth_since, self.depth = now, depth
        if depth == len(self.depth_time_ps):  # deeper than ever: one step at a time
            self.depth_time_ps.append(0)
        if self.tracer:
            self.tracer.depth(self, depth, now)

    def depth_histogram_ps(self) -> list[int]:
        """Time spent at each depth from 0 to the capacity up to now (`depth_time_ps` plus
        the current stretch, and the depths never reached)."""
        hist = self.depth_time_ps + [0] * (self.capacity + 1 - len(self.depth_time_ps))
        hist[self.depth] += int(self.env.now) - self._depth_since
        return hist

    def __len__(self) -> int:
        return len(self.store.items)


class Link(Module):
    """A point-to-point link with a bandwidth (bytes/s, finite, at least 1) and a latency
    (ps, >= 0; a fraction of a picosecond is rounded up, as every time in the kernel is)."""

    def __init__(self, name: str, parent: Module, bytes_per_s: float, latency_ps: int) -> None:
        path = path_of(name, parent)  # (checked before it joins the tree)
        if not finite_number(bytes_per_s) or bytes_per_s < 1:
            raise ConfigError(f"{path}: bandwidth must be a finite number of bytes/s, at "
                              f"least 1, got {bytes_per_s!r}")
        if not finite_number(latency_ps) or latency_ps < 0:
            raise ConfigError(f"{path}: latency must be a finite number of ps, >= 0, got "
                              f"{latency_ps!r}")
        super().__init__(name, parent)
        self.bytes_per_s = bytes_per_s
        self.latency_ps = math.ceil(latency_ps)
        self.holder: simpy.Process | None = None  # the process whose transfer holds it
        self._waiting: deque[LinkWait] = deque()

    def take(self) -> LinkWait | None:
        """Hold the link for the running process: None when it was free (held at once), else
        the event to wait for; the link goes to waiting transfers in request order."""
        if self.holder is None:
            self.holder = self.env.active_process
            return None
        wait = LinkWait(self)
        self._waiting.append(wait)
        return wait

    def give(self) -> None:
        """Let go of the link: the longest-waiting transfer holds it now."""
        if self._waiting:
            wait = self._waiting.popleft()
            self.holder = wait.process
            wait.succeed()
        else:
            self.holder = None

    def transfer(self, nbytes: int) -> Generator:
        """Move `nbytes` (>= 0): hold the link while serializing, then wait out the latency."""
        yield from hold_links([self], [nbytes])
        yield self.env.timeout(self.latency_ps)


class LinkWait(simpy.Event):
    """A transfer waiting for a busy link; triggered when the link is handed to it."""

    def __init__(self, link: Link) -> None:
        super().__init__(link.env)
        self.link, self.process = link, link.env.active_process

    def waiting_for(self, name: Callable[[simpy.Process | None], str]) -> str:
        """What it waits for, in the words of a deadlock report (`desim.deadlock`)."""
        return f"link {self.link.path} (held by {name(self.link.holder)})"


def hold_links(links: Sequence[Link], nbytes: Sequence[int]) -> Generator:
    """Hold every link at once for the longest serialization among them (one transaction).

    This is how a routed or multicast transfer occupies its path: all its links are taken
    together (acquired in name order, so two transfers can never deadlock on each other) and
    released together; link i carries nbytes[i]. Latency is the caller's to add. A path
    used again and again is better made a `LinkGroup` once: it is put in order once.
    """
    if len(links) != len(nbytes):
        raise ValueError(f"hold_links: {len(links)} links but {len(nbytes)} byte counts")
    if len(links) == 1:
        # the common case, a link of its own: nothing to put in order, no other link to be
        # listed twice, one serialization (this path is most of a kernel transaction's cost)
        link, b = links[0], int(nbytes[0])
        if b < 0:
            _check_transfer([link], [b])  # refuses it, in its words
        return _hold_in_order([link], [b], transfer_ps(b, link.bytes_per_s))
    order = sorted(range(len(links)), key=lambda i: links[i].path)
    links, nbytes = [links[i] for i in order], [int(nbytes[i]) for i in order]
    _check_transfer(links, nbytes)
    hold = max(map(transfer_ps, nbytes, [link.bytes_per_s for link in links]), default=0)
    return _hold_in_order(links, nbytes, hold)


class LinkGroup:
    """The links one transaction holds together (a route, a multicast tree), put once, when
    the group is made, in the order `hold_links` takes them (by name), and grouped by
    bandwidth: the elaboration of a path, so that a transfer over it only does the transfer."""

    def __init__(self, links: Sequence[Link]) -> None:
        self.links = sorted(links, key=lambda link: link.path)
        _check_transfer(self.links, [])
        rates: dict[float, list[int]] = {}
        for i, link in enumerate(self.links):
            rates.setdefault(link.bytes_per_s, []).append(i)
        self._by_rate = list(rates.items())

    def hold(self, nbytes: Sequence[int]) -> Generator:
        """`hold_links` over the group: link `self.links[i]` carries nbytes[i] (an int)."""
        if len(nbytes) != len(self.links) or min(nbytes, default=0) < 0:
            _check_transfer(self.links, nbytes)
        # transfer_ps grows with the bytes: at each bandwidth only the most loaded link counts
        hold = max((transfer_ps(max(nbytes[i] for i in at_rate), rate)
                    for rate, at_rate in self._by_rate), default=0)
        return _hold_in_order(self.links, nbytes, hold)


def _check_transfer(links: list[Link], nbytes: Sequence[int]) -> None:
    """Refuse a link listed twice in one transaction (`links` sorted by name; it would wait
    for itself) and a byte count missing or negative (`nbytes` empty: the links alone)."""
    for a, b in pairwise(links):
        if a is b:
            raise ValueError(f"{a.path}: listed twice in one transfer; a transfer holds each "
                             "link once (give it the bytes of both)")
    if not nbytes:
        return
    if len(nbytes) != len(links):
        raise ValueError(f"{len(links)} links but {len(nbytes)} byte counts")
    for link, b in zip(links, nbytes, strict=True):
        if b < 0:
            raise ValueError(f"{link.path}: a transfer of {b} bytes; bytes must be >= 0")


def _hold_in_order(links: list[Link], nbytes: Sequence[int], hold: int) -> Generator:
    """Take `links` in this order, hold them `hold` ps, let them go (`release_links`) and
    trace one slice a link; link i carries nbytes[i]."""
    if not links:
        return
    for link in links:
        wait = link.take()
        if wait is not None:
            yield wait
    env = links[0].env
    if hold:
        yield env.timeout(hold)
    release_links(links, nbytes, hold)
    if links[0].sim.tracer:  # each link its own, none where no probe names it
        now = int(env.now)
        for link, b in zip(links, nbytes, strict=True):
            if link.tracer:
                link.tracer.slice(link, "transfer", now - hold, now, None, {"bytes": b})


def release_links(links: Sequence[Link], nbytes: Sequence[int], hold: int) -> None:
    """Let go of `links`, held together `hold` ps, and count what each carried: its busy
    time, nbytes[i] bytes and one transfer, as `Module.busy_for` and `Module.count` would
    (booked to the running process's job), with the job's counters looked up once for all
    the links. The one place a transfer's actions are counted: `hold_links` and
    `LinkGroup.hold` end here, and so does the bench's copy without tracing hooks
    (benchmarks/kernel_cases.py). Each of them has checked that `nbytes` has a count per
    link, so the loop indexes it rather than `zip(..., strict=True)`, a keyword call that
    cost a tenth of a microsecond a transfer."""
    book = links[0].sim.book()
    for i, link in enumerate(links):
        b = nbytes[i]
        link.give()
        link.busy_ps += hold
        booked = book[link.path]
        link.actions["bytes"] += b
        link.actions["transfers"] += 1
        booked["bytes"] += b
        booked["transfers"] += 1
        booked["busy_ps"] += hold


class Pool(Module):
    """Capacity that processes take and give back (buffer space), a SimPy `Container`.
    `wait_ps` counts the time takers waited for it: how long a full buffer stalled them."""

    def __init__(self, name: str, parent: Module, capacity: int) -> None:
        capacity = _whole_capacity(path_of(name, parent), capacity)  # (before joining the tree)
        super().__init__(name, parent)
        self.container = simpy.Container(self.env, capacity=capacity, init=capacity)

    def take(self, amount: int) -> Generator:
        if amount > self.container.capacity:
            raise ConfigError(f"{self.path}: request of {amount} exceeds capacity "
                              f"{self.container.capacity}")
        asked = int(self.env.now)
        yield self.container.get(amount)
        self.count("take")
        if self.env.now > asked:
            self.count("wait_ps", int(self.env.now) - asked)
        if self.tracer:
            self._trace_in_use()

    def give(self, amount: int) -> Generator:
        """Give back `amount` units; more than are in use is an error (the put would wait
        forever for room, to end as a deadlock far from the bad give)."""
        if amount > self.in_use:
            raise ValueError(f"{self.path}: give of {amount} but only {self.in_use} in use "
                             "(give back what was taken)")
        yield self.container.put(amount)
        self.count("give")
        if self.tracer:
            self._trace_in_use()

    def _trace_in_use(self) -> None:
        """The units in use from now on, to the tracer (`take` and `give` test that there is
        one before they call: with tracing off the hook is that test, not a call)."""
        self.tracer.depth(self, self.in_use, int(self.env.now))

    @property
    def in_use(self) -> int:
        """Units taken and not given back."""
        return int(self.container.capacity - self.container.level)


def _whole_capacity(path: str, capacity: object) -> int:
    """A FIFO's or pool's capacity: a whole number, at least 1 (SimPy's own checks would
    fail with no name, or not at all for an infinite FIFO)."""
    if not isinstance(capacity, Integral) or isinstance(capacity, bool) or capacity < 1:
        raise ConfigError(f"{path}: capacity must be a whole number >= 1, got {capacity!r}")
    return int(capacity)


# The channels that hold items or capacity and do no timed work of their own: no busy time
# or utilization (`desim.stats`), no part of a processor's time (`desim.elaborate`).
UNTIMED = (Fifo, Pool)
