"""Deadlock detection: the event queue is empty, yet declared processes still wait.

A discrete-event simulation cannot hang the way threads do: when every process waits on
something only another waiting process could provide, SimPy's event queue simply empties and
`env.run()` returns, as if the work were done. We turn that silent early stop into a report.
After the run, every process a module declared (`Module.add_process`) that is still alive and
not a daemon is blocked for good; for each we name its module, its generator function and the
event it yielded (`Process.target`), described by the channel that owns it:

    top.ping: process 'ping' waits for Fifo top.qa get
    top.dma: process 'fetch' waits for link top.noc.r0_0->r0_1 (held by top.dma: 'send')

Events do not know which module owns them, so the map from SimPy resources (Store, Resource,
Container) and plain events to module paths is built here, only when a deadlock is found, by
looking at the modules' attributes; a link's wait names its link itself (`LinkWait`).
Nothing is paid while the simulation runs.

A timeout cannot deadlock (it is in the queue); a process waiting on another process is
described through the chain of what that one waits for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import simpy
from simpy.events import Condition, Process, Timeout
from simpy.resources.base import BaseResource
from simpy.resources.container import ContainerGet, ContainerPut
from simpy.resources.resource import Request
from simpy.resources.store import StoreGet, StorePut

from desim.errors import DeadlockError

if TYPE_CHECKING:
    from desim.module import Module, Simulator

_MAX_CHAIN = 8  # how deep to follow "process waits for process waits for ..."


def blocked_processes(sim: Simulator) -> list[tuple[Module, simpy.Process]]:
    """Declared, non-daemon processes still alive, in module order."""
    return [(module, process) for module in sim.modules() for process in module.processes
            if process.is_alive and process not in module.daemon_processes]


def raise_if_deadlocked(sim: Simulator) -> None:
    """Raise `DeadlockError` if the queue is empty and a non-daemon process still waits."""
    if sim.env.peek() != simpy.core.Infinity:
        return
    blocked = blocked_processes(sim)
    if not blocked:
        return
    names = _Names(sim)
    lines = [f"  {module.path}: process {process.name!r} waits for "
             f"{names.describe(process.target)}" for module, process in blocked]
    # a run to a time moves the clock past the moment the queue emptied (`Simulator.run`)
    at = sim.now_ps if sim.idle_since_ps is None else sim.idle_since_ps
    error = DeadlockError(f"deadlock at {at} ps: the event queue is empty but "
                          f"{len(blocked)} process(es) still wait:\n" + "\n".join(lines))
    error.blocked = [(module.path, process.name) for module, process in blocked]
    raise error


class _Names:
    """Names for SimPy objects, from the module attributes that hold them."""

    def __init__(self, sim: Simulator) -> None:
        self.resources: dict[int, str] = {}
        self.events: dict[int, str] = {}
        self.processes: dict[int, str] = {}
        for module in sim.modules():
            for process in module.processes:
                self.processes[id(process)] = f"{module.path}: {process.name!r}"
            for attr, value in sorted(vars(module).items()):
                for key, obj in _members(attr, value):
                    self._register(module, key, obj)

    def _register(self, module: Module, key: str, obj: Any) -> None:
        kind = type(module).__name__
        if isinstance(obj, BaseResource):
            # a channel's own resource is named by the channel; others by attribute
            own = key in ("store", "resource", "container")
            self.resources.setdefault(id(obj), f"{kind} {module.path}" if own
                                      else f"{kind} {module.path}.{key}")
        elif isinstance(obj, simpy.Event) and not isinstance(obj, Process):
            self.events.setdefault(id(obj), f"event {module.path}.{key}")

    def resource(self, resource: BaseResource) -> str:
        return self.resources.get(id(resource), f"an unnamed {type(resource).__name__}")

    def describe(self, event: simpy.Event | None, depth: int = 0) -> str:
        """What a process waiting on `event` waits for, in words."""
        if event is None:
            return "nothing (not started)"
        if isinstance(event, StoreGet):
            return f"{self.resource(event.resource)} get"
        if isinstance(event, StorePut):
            return f"{self.resource(event.resource)} put (full)"
        if isinstance(event, Request):
            holders = [self._process_name(user.proc) for user in event.resource.users]
            held = f" (held by {', '.join(holders)})" if holders else ""
            return f"Resource request on {self._owner(self.resource(event.resource))}{held}"
        if isinstance(event, ContainerGet):
            return f"{self.resource(event.resource)} take of {event.amount}"
        if isinstance(event, ContainerPut):
            return f"{self.resource(event.resource)} give of {event.amount}"
        if isinstance(event, Process):
            inner = ("..." if depth >= _MAX_CHAIN
                     else self.describe(event.target, depth + 1))
            return f"process {self._process_name(event)}, which waits for {inner}"
        if isinstance(event, Condition):
            pending = [self.describe(e, depth + 1) for e in event._events if not e.triggered]
            which = "any of" if event._evaluate == Condition.any_events else "all of"
            return f"{which} [" + "; ".join(pending) + "]"
        if isinstance(event, Timeout):
            return f"a timeout of {event._delay} ps"
        if hasattr(event, "waiting_for"):  # an event that says it (a busy link's LinkWait)
            return event.waiting_for(self._process_name)
        return self.events.get(id(event), "an event that nothing triggers")

    def _process_name(self, process: simpy.Process | None) -> str:
        if process is None:
            return "?"
        return self.processes.get(id(process), f"{process.name!r} (spawned)")

    @staticmethod
    def _owner(name: str) -> str:
        """'Link top.l0' -> 'top.l0' (the message already says it is a resource request)."""
        return name.split(" ", 1)[1] if " " in name else name


def _members(attr: str, value: Any) -> Iterable[tuple[str, Any]]:
    """An attribute and, for a dict or list of resources/events, its elements."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{attr}[{key}]", item
    elif isinstance(value, list | tuple) and len(value) <= 1024:
        for i, item in enumerate(value):
            if isinstance(item, BaseResource | simpy.Event):
                yield f"{attr}[{i}]", item
    else:
        yield attr, value
