"""Modules: the named hierarchy a simulated system is built from.

As in SystemC (`sc_module`) and desmod (`Component`), a system is a tree of modules with dotted
names (`top.noc.r0_0`). A module owns its processes (SimPy generators, declared with
`add_process` and started only when simulation begins), its ports, and its *action counters*:
it counts what it did (reads, MACs, hops...) and never prices it; an energy table turns the
counts into joules afterwards (Accelergy's idea).

Elaboration and simulation are separate: build the tree, bind every port, then
`Simulator.elaborate()` checks the design and starts the processes, and `Simulator.run()`
advances time. If the event queue empties while a declared, non-daemon process still waits,
`run()` raises a `DeadlockError` naming who waits for what (see `desim.deadlock`); a process
that is *meant* to wait forever (a pipeline stage looping on its input queue) is declared with
`daemon=True`.

Observability is opt-in: `Simulator.enable_tracing()` gives every module a `tracer`; until then
`tracer` is None and each hook costs one attribute test (`if self.tracer:`).

Jobs: a process may say which job it is working for (`JobProcess.job`: a pipeline stage sets
it to the layer-phase of the tile it took), and sub-processes it `spawn`s work for the same
one. Every action a module counts is also booked to the job of the process that counted it
(`Simulator.booked`), so that jobs overlapping in time each get their own actions, not a share
of everything that happened meanwhile. Actions counted outside any job are booked to None.
Busy time is booked the same way, as the action `busy_ps` (never in `Module.actions`, which
count what a module did, not how long it took): a job's share of each module's time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Hashable, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

import simpy

from desim.deadlock import raise_if_deadlocked
from desim.errors import ConfigError

if TYPE_CHECKING:
    from desim.clock import Clock
    from desim.trace import Tracer


class JobProcess(simpy.Process):
    """A SimPy process that knows which job (a hashable name) it is working for now."""

    def __init__(self, env: simpy.Environment, generator: Generator,
                 job: Hashable | None = None) -> None:
        super().__init__(env, generator)
        self.job = job


def probed(path: str, probes: Sequence[str]) -> bool:
    """Whether a probe (a glob pattern) names the module at `path`, taken below its root."""
    below = path.partition(".")[2]
    return any(fnmatchcase(below, pattern) for pattern in probes)


class Simulator:
    """The SimPy environment plus the module tree rooted at `top`."""

    def __init__(self) -> None:
        self.env = simpy.Environment()
        self.roots: list[Module] = []
        self.paths: set[str] = set()  # every module's path: stats and traces are keyed by it
        self.elaborated = False
        # when the event queue emptied, if it did in a run that then moved the clock on to
        # its `until` (the time a deadlock report gives; else `now_ps`)
        self.idle_since_ps: int | None = None
        self.tracer: Tracer | None = None
        # the probes: which modules the tracer records (`enable_tracing`'s `modules`)
        self.probes: tuple[str, ...] = ()
        # job -> module path -> action -> count: what each job's processes counted
        self.booked: defaultdict[Hashable | None, defaultdict[str, Counter[str]]] = \
            defaultdict(lambda: defaultdict(Counter))

    @property
    def now_ps(self) -> int:
        return int(self.env.now)

    def book(self) -> defaultdict[str, Counter[str]]:
        """Where an action counted now is booked: the counters (by module path) of the job
        of the running process (None outside any job)."""
        return self.booked[getattr(self.env.active_process, "job", None)]

    def modules(self) -> Iterator[Module]:
        for root in self.roots:
            yield from root.walk()

    def elaborate(self) -> None:
        """Check the design (every port bound), then start every declared process."""
        unbound = [port.path for module in self.modules() for port in module.ports
                   if port.channel is None]
        if unbound:
            raise ConfigError("unbound port(s): " + ", ".join(unbound))
        self._check_channels()
        for module in self.modules():
            module.elaborate()
        for module in self.modules():
            for fn, args, daemon in module._pending_processes:
                process = JobProcess(self.env, fn(*args))
                module.processes.append(process)
                if daemon:
                    module.daemon_processes.add(process)
            module._pending_processes.clear()
        self.elaborated = True

    def _check_channels(self) -> None:
        """Every channel bound to ports needs a driver (an out port) and a reader (an in)."""
        bound: dict[int, list[Port]] = {}
        for module in self.modules():
            for port in module.ports:
                bound.setdefault(id(port.channel), []).append(port)
        for ports in bound.values():
            directions = {p.direction for p in ports}
            name = getattr(ports[0].channel, "path", repr(ports[0].channel))
            if "out" not in directions:
                raise ConfigError(f"channel {name} has no driver (read by "
                                  f"{', '.join(p.path for p in ports)})")
            if "in" not in directions:
                raise ConfigError(f"channel {name} has no reader (driven by "
                                  f"{', '.join(p.path for p in ports)})")

    def run(self, until: int | simpy.Event | None = None) -> None:
        """Advance time; raise `DeadlockError` if the queue empties while work remains.

        The check runs once, after SimPy stops, so it costs nothing per event. With a numeric
        `until` the caller chose a horizon, so stopping there with processes waiting is not an
        error; with `until=None` (run to completion) or an event that never fires it is.
        """
        if not self.elaborated:
            self.elaborate()
        # an event something waits on is work: the queue empties later, if at all (a run to a
        # time leaves SimPy's spent stop event queued, with no callbacks)
        if any(event.callbacks for *_, event in self.env._queue):
            self.idle_since_ps = None
        try:
            if until is None or isinstance(until, simpy.Event):
                self.env.run(until=until)
            else:
                self._run_to(until)
        except RuntimeError:
            # SimPy's "No scheduled events left but 'until' event was not triggered"
            if isinstance(until, simpy.Event) and not until.triggered:
                raise_if_deadlocked(self)
            raise
        if until is None:
            raise_if_deadlocked(self)

    def _run_to(self, until: float) -> None:
        """`env.run(until)`, noting when the queue emptied if it did before `until`: SimPy
        moves the clock on to `until` anyway, and a deadlock found by a later `run()` is to
        be reported at the time the processes blocked, not there."""
        env = self.env
        while env.peek() < until:  # the events SimPy would run before its stop at `until`
            env.step()
        if self.idle_since_ps is None and env.peek() == simpy.core.Infinity:
            self.idle_since_ps = self.now_ps
        env.run(until=until)

    def enable_tracing(self, trace_path: str | Path | None = None,
                       vcd_path: str | Path | None = None,
                       modules: Sequence[str] = ()) -> Tracer:
        """Record transactions (Chrome/Perfetto JSON) and/or busy and depth signals (VCD).

        Call after building the module tree and before `run()`; modules built later inherit
        the tracer too. `finish_tracing()` writes the files. `modules`: the probes, glob
        patterns (`fnmatch`) of the paths of the modules to record, each path taken below
        its root (`noc.*` is `top.noc.r0_0->r0_1`); none: every module. A module left out
        keeps no tracer, and its hooks cost what they cost with tracing off.
        """
        from desim.trace import Tracer

        self.tracer = Tracer(self, trace_path, vcd_path)
        self.probes = tuple(modules)
        for module in self.modules():
            module.tracer = self.tracer_of(module.path)
        return self.tracer

    def tracer_of(self, path: str) -> Tracer | None:
        """The tracer of the module at `path`: none where tracing is off or no probe
        names it (`enable_tracing`)."""
        if self.tracer is None or not self.probes:
            return self.tracer
        return self.tracer if probed(path, self.probes) else None

    def finish_tracing(self) -> list[Path]:
        """Write the trace and VCD files asked for in `enable_tracing`; return their paths."""
        if self.tracer is None:
            return []
        return self.tracer.write(self.now_ps)


class Port:
    """A named connection point of a module, bound to a channel before simulation.

    An "out" port drives its channel (puts), an "in" port reads it (gets); elaboration checks
    that every channel bound to ports has both a driver and a reader, as SystemC does.
    """

    def __init__(self, owner: Module, name: str, direction: str = "in") -> None:
        if direction not in ("in", "out"):
            raise ValueError(f"port direction must be 'in' or 'out', got {direction!r}")
        self.owner = owner
        self.name = name
        self.direction = direction
        self.channel: Any = None

    def put(self, item: Any) -> Any:
        if self.direction != "out":  # elaboration's driver/reader check relies on it
            raise ConfigError(f"{self.path}: put through an 'in' port (an in port only gets)")
        return self.channel.put(item)

    def get(self) -> Any:
        if self.direction != "in":
            raise ConfigError(f"{self.path}: get through an 'out' port (an out port only puts)")
        return self.channel.get()

    @property
    def path(self) -> str:
        return f"{self.owner.path}.{self.name}"

    def bind(self, channel: Any) -> None:
        self.channel = channel


def path_of(name: str, parent: Module | Simulator) -> str:
    """The path a module named `name` takes below `parent`: what a subclass names in an
    error of its own arguments, checked before it joins the tree (a failed one had stayed
    in it, its path taken)."""
    return name if isinstance(parent, Simulator) else f"{parent.path}.{name}"


class Module:
    """A node of the hierarchy: a name, children, processes, ports and action counters."""

    # Transactions it serves at once (a dual-ported buffer: 2), so its busy time can reach
    # this many times the run's; a share of the run is that over this (`desim.stats`).
    concurrency = 1

    def __init__(self, name: str, parent: Module | Simulator) -> None:
        self.path = path_of(name, parent)
        if isinstance(parent, Simulator):
            self.sim, self.parent = parent, None
        else:
            self.sim, self.parent = parent.sim, parent
        if self.path in self.sim.paths:  # its stats and trace would be another's
            raise ConfigError(f"two modules named {self.path}: a module's path must be unique "
                              "(its stats and trace are keyed by it)")
        self.sim.paths.add(self.path)
        if isinstance(parent, Simulator):
            parent.roots.append(self)
        else:
            parent.children.append(self)
        self.name = name
        self.env: simpy.Environment = self.sim.env
        self.children: list[Module] = []
        self.ports: list[Port] = []
        self.processes: list[simpy.Process] = []
        self.daemon_processes: set[simpy.Process] = set()
        self._pending_processes: list[tuple[Callable[..., Generator], tuple, bool]] = []
        self.actions: Counter[str] = Counter()
        self.busy_ps = 0
        self.tracer: Tracer | None = self.sim.tracer_of(self.path)

    def add_process(self, fn: Callable[..., Generator], *args: Any, daemon: bool = False) -> None:
        """Declare a process; it starts when the simulator elaborates.

        `daemon=True` marks a process that may legitimately wait forever (a stage looping on
        its input queue once all work is done): deadlock detection ignores it. As in SystemC,
        declaring one once the simulator has elaborated is an error: it would never start
        (`spawn` starts a sub-process during the run).
        """
        if self.sim.elaborated:
            raise ConfigError(f"{self.path}: process {getattr(fn, '__name__', fn)!r} declared "
                              "after elaboration would never start; declare processes before "
                              "Simulator.elaborate() or run(), or start one with spawn()")
        self._pending_processes.append((fn, args, daemon))

    def add_port(self, name: str, direction: str = "in") -> Port:
        port = Port(self, name, direction)
        self.ports.append(port)
        return port

    def count(self, action: str, n: int = 1) -> None:
        self.actions[action] += n
        self.sim.book()[self.path][action] += n

    def count_all(self, counts: Mapping[str, int]) -> None:
        """`count` each action of `counts`, in order (the job's counters looked up once)."""
        booked = self.sim.book()[self.path]
        for action, n in counts.items():
            self.actions[action] += n
            booked[action] += n

    def spawn(self, generator: Generator) -> JobProcess:
        """Start a sub-process now, working for the job of the process that starts it."""
        return JobProcess(self.env, generator, getattr(self.env.active_process, "job", None))

    def traced(self, name: str, start_ps: int, end_ps: int, track: str | None = None,
               args: dict[str, Any] | None = None) -> None:
        """Record one transaction of this module, [start_ps, end_ps), if tracing is on.

        Concurrent transactions of one module (a buffer's read and write ports) go on
        separate sub-tracks (`track="read"` shows as `path.read`); slices on one track must
        not overlap, and the tracer moves any that do onto extra lanes.
        """
        if self.tracer:
            self.tracer.slice(self, name, start_ps, end_ps, track, args)

    def busy_for(self, duration_ps: int, name: str, track: str | None = None,
                 args: dict[str, Any] | None = None) -> Generator:
        """Spend `duration_ps` (whole picoseconds) on one transaction: wait it out, count it
        as busy time and record it for the trace. The common body of every timed component,
        so with tracing off its hook is one test: the slice's start (now less `duration_ps`)
        is worked out, and `traced` called, only when there is a tracer."""
        if duration_ps <= 0:
            return
        yield self.env.timeout(duration_ps)
        self.busy_ps += duration_ps
        self.sim.book()[self.path]["busy_ps"] += duration_ps
        if self.tracer:
            end = int(self.env.now)
            self.traced(name, end - duration_ps, end, track, args)

    def work_items(self, n: int, per_cycle: int, clock: Clock, name: str,
                   action: str) -> Generator:
        """Handle `n` items, `per_cycle` a cycle: busy for ceil(n / per_cycle) cycles of
        `clock`, then `n` counted as `action`. The body of every rate-limited unit (a
        selector scanning entries, a vector unit's lanes...)."""
        if n <= 0:
            return
        yield from self.busy_for(clock.cycles(-(-n // per_cycle)), name)
        self.count(action, n)

    def elaborate(self) -> None:
        """Hook for subclasses: checks that need the whole tree built."""

    def walk(self) -> Iterator[Module]:
        yield self
        for child in self.children:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
