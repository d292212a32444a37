"""The kernel refuses what it cannot simulate, at the call that is wrong, naming the module:
processes declared too late, two modules of one path, links, FIFOs, pools and clocks with
impossible parameters, ports used against their direction, `desim.run`'s arguments. And the
exact figures of what it accepts: fractional bandwidths, fractional latencies, the time of a
deadlock found after a run to a horizon."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

import desim
from desim.channels import Fifo, Link, LinkGroup, Pool, hold_links
from desim.clock import PS_PER_S, Clock, transfer_ps
from desim.errors import ConfigError, DeadlockError
from desim.module import Module, Simulator
from desim.runner import merge_traces
from desim.trace import chrome_trace_text


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


@pytest.mark.parametrize("bandwidth", [float("nan"), float("inf"), 0.5, True, "1e9"])
def test_a_link_without_a_finite_bandwidth_is_refused(bandwidth):
    _, top = _top()
    with pytest.raises(ConfigError) as err:
        Link("l", top, bandwidth, 0)
    assert str(err.value) == ("top.l: bandwidth must be a finite number of bytes/s, at least 1, "
                              f"got {bandwidth!r}")


@pytest.mark.parametrize("latency", [float("nan"), float("inf"), -1, None])
def test_a_link_without_a_finite_latency_is_refused(latency):
    _, top = _top()
    with pytest.raises(ConfigError) as err:
        Link("l", top, 1e9, latency)
    assert str(err.value) == f"top.l: latency must be a finite number of ps, >= 0, got {latency!r}"


def test_a_fractional_latency_is_rounded_up_to_the_picosecond():
    """1.7 ps is 2 (was 1: truncated): 1,000 bytes at 1 GB/s (1 us) then 2 ps."""
    sim, top = _top()
    link = Link("l", top, 10**9, 1.7)
    assert link.latency_ps == 2

    def send():
        yield from link.transfer(1_000)

    top.add_process(send)
    sim.run()
    assert sim.now_ps == 1_000_000 + 2


def test_a_negative_transfer_is_refused():
    sim, top = _top()
    link = Link("l", top, 10**9, 100)

    def send():
        yield from link.transfer(-100)

    top.add_process(send)
    with pytest.raises(ValueError) as err:
        sim.run()
    assert str(err.value) == "top.l: a transfer of -100 bytes; bytes must be >= 0"
    group = LinkGroup([link])
    with pytest.raises(ValueError, match="^top.l: a transfer of -1 bytes; bytes must be >= 0$"):
        group.hold([-1])
    with pytest.raises(ValueError, match="^1 links but 2 byte counts$"):
        group.hold([1, 2])


def test_fractional_bandwidths_are_timed_exactly():
    """3 bytes at 2.5 B/s are 1.2 s (was 1.5 s: the rate truncated to 2 B/s); 1 byte at
    1.5 GB/s is 666 2/3 ps, rounded up to 667; 1 byte at 0.75 TB/s, 1 1/3 ps, to 2."""
    assert transfer_ps(3, 2.5) == 1_200_000_000_000 == Fraction(6, 5) * PS_PER_S
    assert transfer_ps(1, 1.5e9) == 667
    assert transfer_ps(1, 0.75e12) == 2
    assert transfer_ps(5, Fraction(5, 2)) == 2 * PS_PER_S
    assert transfer_ps(1000, 16 * 10**9) == 62_500  # whole rates as before


def test_a_link_listed_twice_in_one_transfer_is_refused():
    """It would wait for itself (a deadlock at 0 ps); a NoC's groups list each link once."""
    sim, top = _top()
    link = Link("l", top, 10**9, 0)
    message = ("top.l: listed twice in one transfer; a transfer holds each link once (give it "
               "the bytes of both)")
    with pytest.raises(ValueError) as err:
        hold_links([link, link], [10, 10])
    assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        LinkGroup([link, link])
    assert str(err.value) == message


@pytest.mark.parametrize("capacity", [0, -1, 2.0, float("inf"), True, None])
@pytest.mark.parametrize("kind", [Fifo, Pool])
def test_a_fifo_or_pool_without_a_whole_capacity_is_refused(kind, capacity):
    _, top = _top()
    with pytest.raises(ConfigError) as err:
        kind("c", top, capacity)
    assert str(err.value) == f"top.c: capacity must be a whole number >= 1, got {capacity!r}"


def test_a_deep_fifo_keeps_only_the_depths_it_reached():
    """A FIFO of 10^12 is made at once (was a list of 10^12 + 1 entries); three items put at
    0, 10 and 30 ps and looked at 100 ps: depths 0, 1, 2 for 0, 10, 20 ps, 3 for the 70 up to
    now."""
    sim, top = _top()
    fifo = Fifo("q", top, 10**12)

    def producer():
        for t in (0, 10, 20):
            yield sim.env.timeout(t)
            yield from fifo.put(t)

    top.add_process(producer)
    sim.run(until=100)
    assert fifo.depth_time_ps == [0, 10, 20, 0]
    assert fifo.depth == 3 and int(sim.env.now) - fifo._depth_since == 70


def test_a_pool_refuses_a_give_of_more_than_is_in_use():
    """3 taken, 4 given: refused at the give (was a put waiting for room, reported as a
    deadlock)."""
    sim, top = _top()
    pool = Pool("p", top, 10)

    def over():
        yield from pool.take(3)
        yield from pool.give(4)

    top.add_process(over)
    with pytest.raises(ValueError) as err:
        sim.run()
    assert str(err.value) == "top.p: give of 4 but only 3 in use (give back what was taken)"
    assert pool.in_use == 3


@pytest.mark.parametrize("period", [1000.0, 0.5])
def test_a_float_period_is_refused_as_a_float(period):
    with pytest.raises(ConfigError) as err:
        Clock(period)
    assert str(err.value) == (
        "clock 'clk': period must be an int or a Fraction of picoseconds (a float is not exact: "
        f"use Clock.from_mhz or Fraction), got {period!r} (a float)")


@pytest.mark.parametrize("mhz", [0, -5, float("nan"), float("inf"), "x", True, None])
def test_a_clock_of_no_frequency_is_refused(mhz):
    with pytest.raises(ConfigError) as err:
        Clock.from_mhz(mhz)
    assert str(err.value) == ("clock 'clk': frequency must be a finite number of MHz, above 0, "
                              f"got {mhz!r}")


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


@pytest.mark.parametrize("kwargs, message", [
    ({"config": None}, "config: expected the path of an experiment file or results folder "
                       "(a str or Path), got None"),
    ({"config": 3}, "config: expected the path of an experiment file or results folder "
                    "(a str or Path), got 3"),
    ({"out": 5}, "out: expected the path of a folder (a str or Path) or None, got 5"),
    ({"cache": 5}, "cache: expected the path of a folder (a str or Path) or None, got 5"),
])
def test_desim_run_checks_its_paths(kwargs, message):
    with pytest.raises(TypeError) as err:
        desim.run(**{"config": "configs/experiments/quickstart.yaml", **kwargs})
    assert str(err.value) == message


def test_merged_traces_keep_other_data_one_event_a_line():
    """Two runs' traces merged: each run a pid, `otherData` kept, written one event a line
    (a line per event, plus the opening and the closing one); each run's 1,000 bytes at
    1 GB/s a 1 us slice."""
    traces = {}
    for name in ("a", "b"):
        sim, top = _top()
        link = Link("l", top, 10**9, 0)

        def send(link=link):
            yield from link.transfer(1_000)

        top.add_process(send)
        tracer = sim.enable_tracing()
        sim.run()
        traces[name] = tracer.chrome_trace()
    merged = merge_traces(traces)
    assert merged["otherData"] == {"generator": "desim", "source_time_unit": "ps"}
    text = chrome_trace_text(merged)
    events = json.loads(text)["traceEvents"]
    assert json.loads(text) == merged
    assert len(text.splitlines()) == len(events) + 2
    assert {e["pid"] for e in events} == {0, 1}
    slices = [e for e in events if e["ph"] == "X"]
    assert [(e["pid"], e["ts"], e["dur"]) for e in slices] == [(0, 0.0, 1.0), (1, 0.0, 1.0)]


def test_a_channel_refused_for_its_arguments_leaves_no_module_behind():
    """A Fifo, Pool or Link whose arguments are refused had joined the tree first: a
    half-built child stayed under its parent, its path taken, so the corrected one was
    refused as a second module of that path."""
    sim = Simulator()
    top = Module("top", sim)
    for make in (lambda: Fifo("q", top, 0), lambda: Pool("q", top, -1),
                 lambda: Link("q", top, float("nan"), 0)):
        with pytest.raises(ConfigError, match=r"^top\.q: "):
            make()
        assert top.children == [] and sim.paths == {"top"}
    assert Fifo("q", top, 4).path == "top.q"
