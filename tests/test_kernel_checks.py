"""The kernel refuses what it cannot simulate, at the call that is wrong, naming the module:
processes declared too late, two modules of one path, links, FIFOs, pools and clocks with
impossible parameters, ports used against their direction, `desim.run`'s arguments. And the
exact figures of what it accepts: fractional bandwidths, fractional latencies, the time of a
deadlock found after a run to a horizon."""

from __future__ import annotations

import pytest

from desim.channels import Fifo, Link
from desim.errors import ConfigError, DeadlockError
from desim.module import Module, Simulator


def _top() -> tuple[Simulator, Module]:
    sim = Simulator()
    return sim, Module("top", sim)


def test_a_process_declared_after_elaboration_is_refused():
    sim, top = _top()
    sim.elaborate()

    def late():
        yield sim.env.timeout(5)

    with pytest.raises(ConfigError) as err:
        top.add_process(late)
    assert str(err.value) == (
        "top: process 'late' declared after elaboration would never start; declare processes "
        "before Simulator.elaborate() or run(), or start one with spawn()")


def test_two_modules_of_one_path_are_refused():
    sim, top = _top()
    Fifo("q", top, 1)
    with pytest.raises(ConfigError) as err:
        Fifo("q", top, 4)
    assert str(err.value) == ("two modules named top.q: a module's path must be unique (its "
                              "stats and trace are keyed by it)")
    with pytest.raises(ConfigError, match="^two modules named top: "):
        Module("top", sim)
    assert [m.path for m in sim.modules()] == ["top", "top.q"]  # the refused ones not added


def test_a_deadlock_after_a_run_to_a_horizon_is_reported_when_the_queue_emptied():
    """The process blocks at 10 ps; `run(until=100)` moves the clock to 100, `run()` finds
    the deadlock: at 10 ps (was 100), and still 10 after a second horizon."""
    sim, top = _top()
    fifo = Fifo("q", top, 1)

    def waits():
        yield sim.env.timeout(10)
        yield from fifo.get()

    top.add_process(waits)
    sim.run(until=100)
    sim.run(until=200)
    assert sim.now_ps == 200
    with pytest.raises(DeadlockError) as err:
        sim.run()
    assert str(err.value) == ("deadlock at 10 ps: the event queue is empty but 1 process(es) "
                              "still wait:\n  top: process 'waits' waits for Fifo top.q get")


def test_a_deadlock_on_a_link_is_reported_as_the_module_docstring_shows():
    sim, top = _top()
    dma = Module("dma", top)
    link = Link("l", top, 10**9, 0)
    never = sim.env.event()

    def send():
        link.take()
        yield never

    def fetch():
        yield sim.env.timeout(7)
        yield from link.transfer(10)

    dma.add_process(send)
    dma.add_process(fetch)
    with pytest.raises(DeadlockError) as err:
        sim.run()
    assert str(err.value).splitlines()[0] == (
        "deadlock at 7 ps: the event queue is empty but 2 process(es) still wait:")
    assert str(err.value).splitlines()[2] == (
        "  top.dma: process 'fetch' waits for link top.l (held by top.dma: 'send')")


def test_ports_are_used_in_their_direction():
    sim, top = _top()
    fifo = Fifo("q", top, 2)
    inp, out = top.add_port("inp", "in"), top.add_port("out", "out")
    inp.bind(fifo)
    out.bind(fifo)
    with pytest.raises(ConfigError) as err:
        inp.put(1)
    assert str(err.value) == "top.inp: put through an 'in' port (an in port only gets)"
    with pytest.raises(ConfigError) as err:
        out.get()
    assert str(err.value) == "top.out: get through an 'out' port (an out port only puts)"
    got = []

    def through():
        yield from out.put(5)
        got.append((yield from inp.get()))

    top.add_process(through)
    sim.run()
    assert got == [5]
