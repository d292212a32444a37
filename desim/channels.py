"""Channels between modules: bounded FIFO, bandwidth/latency link, capacity pool.

Each is a module, so it has a dotted name and counts its actions. All three are thin layers
over SimPy (`Store`, `Resource`, `Container`): the scheduling is SimPy's.

A link's timing is that of a pipelined wire: a transfer of B bytes occupies the link for
B / bandwidth (serialization, during which no other transfer may use it), and its last byte
arrives `latency` after that. So one transfer over a free link takes latency + B / bandwidth,
and two transfers started together finish at latency + 2 B / bandwidth.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import simpy

from desim.clock import transfer_ps
from desim.errors import ConfigError
from desim.module import Module


class Fifo(Module):
    """A bounded first-in first-out queue; `put` blocks the producer while it is full."""

    def __init__(self, name: str, parent: Module, capacity: int) -> None:
        super().__init__(name, parent)
        if capacity < 1:
            raise ConfigError(f"{self.path}: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.store = simpy.Store(self.env, capacity=capacity)
        self.depth = 0                                         # items put and not yet got
        self._depth_since = 0
        self.depth_time_ps: list[int] = [0] * (capacity + 1)  # time spent at each depth

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

    def __len__(self) -> int:
        return len(self.store.items)


class Link(Module):
    """A point-to-point link with a bandwidth (bytes/s) and a latency (ps)."""

    def __init__(self, name: str, parent: Module, bytes_per_s: float, latency_ps: int) -> None:
        super().__init__(name, parent)
        if bytes_per_s <= 0 or latency_ps < 0:
            raise ConfigError(f"{self.path}: bandwidth must be > 0 and latency >= 0, got "
                              f"{bytes_per_s} B/s and {latency_ps} ps")
        self.bytes_per_s = bytes_per_s
        self.latency_ps = int(latency_ps)
        self.resource = simpy.Resource(self.env, capacity=1)

    def transfer(self, nbytes: int) -> Generator:
        """Move `nbytes`: hold the link while serializing, then wait out the latency."""
        yield from hold_links([self], [nbytes])
        yield self.env.timeout(self.latency_ps)


def hold_links(links: Sequence[Link], nbytes: Sequence[int]) -> Generator:
    """Hold every link at once for the longest serialization among them (one transaction).

    This is how a routed or multicast transfer occupies its path: all its links are taken
    together (acquired in name order, so two transfers can never deadlock on each other) and
    released together; link i carries nbytes[i]. Latency is the caller's to add.
    """
    order = sorted(range(len(links)), key=lambda i: links[i].path)
    requests = []
    for i in order:
        request = links[i].resource.request()
        requests.append((links[i], request))
        yield request
    hold = max((transfer_ps(b, link.bytes_per_s) for link, b in zip(links, nbytes, strict=True)),
               default=0)
    if hold:
        yield links[order[0]].env.timeout(hold)
    for (link, request), i in zip(requests, order, strict=True):
        link.resource.release(request)
        link.busy_ps += hold
        link.count("bytes", int(nbytes[i]))
        link.count("transfers")


class Pool(Module):
    """Capacity that processes take and give back (buffer space), a SimPy `Container`."""

    def __init__(self, name: str, parent: Module, capacity: int) -> None:
        super().__init__(name, parent)
        self.container = simpy.Container(self.env, capacity=capacity, init=capacity)

    def take(self, amount: int) -> Generator:
        if amount > self.container.capacity:
            raise ConfigError(f"{self.path}: request of {amount} exceeds capacity "
                              f"{self.container.capacity}")
        yield self.container.get(amount)
        self.count("take")

    def give(self, amount: int) -> Generator:
        yield self.container.put(amount)
        self.count("give")
