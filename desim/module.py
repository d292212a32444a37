"""Modules: the named hierarchy a simulated system is built from.

As in SystemC (`sc_module`) and desmod (`Component`), a system is a tree of modules with dotted
names (`top.noc.r0_0`). A module owns its processes (SimPy generators, declared with
`add_process` and started only when simulation begins), its ports, and its *action counters*:
it counts what it did (reads, MACs, hops...) and never prices it; an energy table turns the
counts into joules afterwards (Accelergy's idea).

Elaboration and simulation are separate: build the tree, bind every port, then
`Simulator.elaborate()` checks the design and starts the processes, and `Simulator.run()`
advances time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterator
from typing import Any

import simpy

from desim.errors import ConfigError


class Simulator:
    """The SimPy environment plus the module tree rooted at `top`."""

    def __init__(self) -> None:
        self.env = simpy.Environment()
        self.roots: list[Module] = []
        self.elaborated = False

    @property
    def now_ps(self) -> int:
        return int(self.env.now)

    def modules(self) -> Iterator[Module]:
        for root in self.roots:
            yield from root.walk()

    def elaborate(self) -> None:
        """Check the design (every port bound), then start every declared process."""
        unbound = [port.path for module in self.modules() for port in module.ports
                   if port.channel is None]
        if unbound:
            raise ConfigError("unbound port(s): " + ", ".join(unbound))
        for module in self.modules():
            module.elaborate()
        for module in self.modules():
            for fn, args in module._pending_processes:
                module.processes.append(self.env.process(fn(*args)))
            module._pending_processes.clear()
        self.elaborated = True

    def run(self, until: int | simpy.Event | None = None) -> None:
        if not self.elaborated:
            self.elaborate()
        self.env.run(until=until)


class Port:
    """A named connection point of a module, bound to a channel before simulation."""

    def __init__(self, owner: Module, name: str) -> None:
        self.owner = owner
        self.name = name
        self.channel: Any = None

    @property
    def path(self) -> str:
        return f"{self.owner.path}.{self.name}"

    def bind(self, channel: Any) -> None:
        self.channel = channel


class Module:
    """A node of the hierarchy: a name, children, processes, ports and action counters."""

    def __init__(self, name: str, parent: Module | Simulator) -> None:
        if isinstance(parent, Simulator):
            self.sim, self.parent, self.path = parent, None, name
            parent.roots.append(self)
        else:
            self.sim, self.parent, self.path = parent.sim, parent, f"{parent.path}.{name}"
            parent.children.append(self)
        self.name = name
        self.env: simpy.Environment = self.sim.env
        self.children: list[Module] = []
        self.ports: list[Port] = []
        self.processes: list[simpy.Process] = []
        self._pending_processes: list[tuple[Callable[..., Generator], tuple]] = []
        self.actions: Counter[str] = Counter()
        self.busy_ps = 0

    def add_process(self, fn: Callable[..., Generator], *args: Any) -> None:
        """Declare a process; it starts when the simulator elaborates."""
        self._pending_processes.append((fn, args))

    def add_port(self, name: str) -> Port:
        port = Port(self, name)
        self.ports.append(port)
        return port

    def count(self, action: str, n: int = 1) -> None:
        self.actions[action] += n

    def elaborate(self) -> None:
        """Hook for subclasses: checks that need the whole tree built."""

    def walk(self) -> Iterator[Module]:
        yield self
        for child in self.children:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
