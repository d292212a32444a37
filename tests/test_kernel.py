"""Closed-form checks of the kernel: clocks, links, FIFOs."""

from fractions import Fraction

import pytest

from desim.channels import Fifo, Link, LinkGroup, hold_links
from desim.clock import Clock, transfer_ps
from desim.errors import ConfigError
from desim.module import Module, Simulator

GB_PER_S = 10**9


def test_clock_periods_on_the_picosecond_grid():
    assert Clock.from_mhz(500).period_ps == 2000
    assert Clock.from_mhz(1000).cycles(7) == 7000
    assert Clock.from_mhz(1000).cycles_until(7001) == 8


@pytest.mark.parametrize("mhz, period", [(1200, Fraction(2500, 3)), (1500, Fraction(2000, 3)),
                                         (933.3, Fraction(10_000_000, 9333))])
def test_a_clock_off_the_grid_keeps_its_period_exactly(mhz, period):
    """1,200 MHz is 833 1/3 ps a cycle: cycle n's edge is the first picosecond at or after
    n periods, so three cycles take 2,500 ps exactly and one takes 834."""
    clock = Clock.from_mhz(mhz)
    assert clock.period_ps == period and clock.frequency_hz == pytest.approx(mhz * 1e6)
    for n in (1, 2, 3, 7, 1000, 123_457):
        ps = clock.cycles(n)
        assert ps == -(-n * period.numerator // period.denominator)  # ceil(n x period)
        assert clock.cycles_until(ps) == n and clock.cycles_until(ps + 1) == n + 1
        assert clock.cycles_until(ps - 1) == n  # a picosecond early: still cycle n's
        assert clock.to_cycles(ps) == pytest.approx(n, abs=float(1 / period))
    assert Clock.from_mhz(1200).cycles(3) == 2500 and Clock.from_mhz(1200).cycles(1) == 834


@pytest.mark.parametrize("mhz", [2_000_000, 1e9])
def test_a_clock_faster_than_a_picosecond_is_refused(mhz):
    with pytest.raises(ConfigError, match="a picosecond or more"):
        Clock.from_mhz(mhz)


def test_transfer_time_rounds_up_to_the_picosecond():
    assert transfer_ps(1000, 16 * GB_PER_S) == 62_500
    assert transfer_ps(1, 3 * 10**12) == 1  # a third of a ps rounds up
    assert transfer_ps(0, GB_PER_S) == 0


def _link_system(bandwidth: float, latency: int):
    sim = Simulator()
    top = Module("top", sim)
    return sim, top, Link("link", top, bandwidth, latency)


def test_free_link_takes_latency_plus_bytes_over_bandwidth():
    sim, top, link = _link_system(8 * GB_PER_S, latency=5_000)
    finished = []

    def sender():
        yield from link.transfer(4096)
        finished.append(sim.now_ps)

    top.add_process(sender)
    sim.run()
    assert finished == [5_000 + 4096 * 1000 // 8]  # 5 ns + 512 ns
    assert link.actions["bytes"] == 4096 and link.actions["transfers"] == 1


def test_two_transfers_sharing_a_link_take_twice_as_long():
    sim, top, link = _link_system(8 * GB_PER_S, latency=0)
    finished = []

    def sender():
        yield from link.transfer(4096)
        finished.append(sim.now_ps)

    top.add_process(sender)
    top.add_process(sender)
    sim.run()
    assert finished == [512_000, 1_024_000]
    assert link.busy_ps == 1_024_000


def test_latency_is_pipelined_behind_serialization():
    sim, top, link = _link_system(8 * GB_PER_S, latency=10_000)
    finished = []

    def sender():
        yield from link.transfer(800)
        finished.append(sim.now_ps)

    top.add_process(sender)
    top.add_process(sender)
    sim.run()
    assert finished == [10_000 + 100_000, 10_000 + 200_000]


def test_a_route_holds_every_link_for_its_longest_serialization():
    sim = Simulator()
    top = Module("top", sim)
    a, b = Link("a", top, 8 * GB_PER_S, 0), Link("b", top, 4 * GB_PER_S, 0)
    done = []

    def route():
        yield from hold_links([a, b], [800, 800])
        done.append(sim.now_ps)

    top.add_process(route)
    top.add_process(route)
    sim.run()
    assert done == [200_000, 400_000]  # the slower link sets the pace for both


def test_a_link_group_holds_its_links_as_hold_links_does():
    """A `LinkGroup` (links put in order once) times and counts a transfer as `hold_links`
    does with the same links in any order: the most loaded link at each bandwidth sets the
    pace, each link counts its own bytes."""
    def run(hold):
        sim = Simulator()
        top = Module("top", sim)
        links = [Link("c", top, 8 * GB_PER_S, 0), Link("a", top, 4 * GB_PER_S, 0),
                 Link("b", top, 8 * GB_PER_S, 0)]
        done = []

        def route(nbytes):
            yield from hold(links, nbytes)
            done.append(sim.now_ps)

        top.add_process(route, [1600, 300, 800])  # c: 200 ns, a: 75 ns, b: 100 ns
        top.add_process(route, [0, 900, 0])       # a: 225 ns
        sim.run()
        return done, [dict(link.actions) for link in links]

    def grouped(links, nbytes):
        group = LinkGroup(links)
        assert [link.name for link in group.links] == ["a", "b", "c"]  # by name
        by_link = dict(zip(links, nbytes, strict=True))
        return group.hold([by_link[link] for link in group.links])

    assert run(grouped) == run(hold_links)
    assert run(hold_links)[0] == [200_000, 425_000]


def test_bounded_fifo_blocks_the_producer_until_the_consumer_takes_one():
    sim = Simulator()
    top = Module("top", sim)
    fifo = Fifo("fifo", top, capacity=2)
    put_times = []

    def producer():
        for i in range(3):
            yield from fifo.put(i)
            put_times.append(sim.now_ps)

    def consumer():
        yield sim.env.timeout(1_000)
        item = yield from fifo.get()
        assert item == 0

    top.add_process(producer)
    top.add_process(consumer)
    sim.run()
    assert put_times == [0, 0, 1_000]  # the third put waited for the get at 1 ns
    assert fifo.actions["put"] == 3 and fifo.actions["get"] == 1
    assert fifo.depth_time_ps[2] == 1_000  # full from 0 to 1 ns


def test_module_paths_are_dotted():
    sim = Simulator()
    top = Module("top", sim)
    child = Module("cluster3", top)
    assert Module("pe", child).path == "top.cluster3.pe"
    assert [m.path for m in sim.modules()] == ["top", "top.cluster3", "top.cluster3.pe"]


def test_an_unbound_port_stops_elaboration_with_its_path():
    sim = Simulator()
    top = Module("top", sim)
    Module("dma", top).add_port("dram")
    with pytest.raises(ConfigError, match="top.dma.dram"):
        sim.elaborate()


def test_a_channel_with_no_driver_stops_elaboration_naming_it():
    sim = Simulator()
    top = Module("top", sim)
    fifo = Fifo("q", top, capacity=1)
    top.add_port("inp", "in").bind(fifo)
    with pytest.raises(ConfigError, match=r"channel top\.q has no driver \(read by top\.inp\)"):
        sim.elaborate()


def test_ports_carry_items_between_processes():
    sim = Simulator()
    top = Module("top", sim)
    fifo = Fifo("q", top, capacity=1)
    out, inp = top.add_port("out", "out"), top.add_port("inp", "in")
    out.bind(fifo)
    inp.bind(fifo)
    got = []

    def producer():
        for i in range(3):
            yield from out.put(i)

    def consumer():
        for _ in range(3):
            got.append((yield from inp.get()))

    top.add_process(producer)
    top.add_process(consumer)
    sim.run()
    assert got == [0, 1, 2]
