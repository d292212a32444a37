"""Closed-form checks of the kernel: clocks, links, FIFOs."""

from fractions import Fraction

import pytest

from desim.channels import Fifo, Link, LinkGroup, Pool, hold_links
from desim.clock import PS_PER_NS, Clock, transfer_ps
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


def test_a_one_picosecond_clock_is_the_fastest_allowed():
    """1,000,000 MHz is one picosecond a cycle: the limit, allowed (2,000,000 MHz is not);
    a 1 GHz cycle is one nanosecond."""
    assert Clock(1).period_ps == Clock.from_mhz(1_000_000).period_ps == 1
    assert Clock.from_mhz(1_000_000).cycles(5) == 5
    assert Clock.from_mhz(1000).period_ps == PS_PER_NS == 1_000


def test_to_cycles_keeps_the_fraction_of_a_cycle():
    # 1,500 ps at 1,000 ps a cycle is 1.5 cycles, not 1; 2,500 ps at 833 1/3 ps is 3.0
    assert Clock(1000).to_cycles(1500) == 1.5
    assert Clock.from_mhz(1200).to_cycles(1250) == 1.5


def test_the_link_is_free_again_while_the_last_byte_is_in_flight():
    """The latency comes after the serialization, not before it: a transfer of 800 B at
    8 GB/s holds the link 0..100 ns and arrives at 100 + 300 = 400 ns; another transfer
    started at 300 ns finds the link free and holds it 300..400 ns (it would wait to 500 ns
    had the first held the link from 300 to 400 ns, after its latency)."""
    sim, top, link = _link_system(8 * GB_PER_S, latency=300_000)
    done = {}

    def first():
        yield from link.transfer(800)
        done["first"] = sim.now_ps

    def second():
        yield sim.env.timeout(300_000)
        yield from hold_links([link], [800])
        done["second"] = sim.now_ps

    def probe():
        yield sim.env.timeout(150_000)
        done["busy_at_150ns"] = link.busy_ps  # the first transfer's 100 ns, already booked

    for process in (first, second, probe):
        top.add_process(process)
    sim.run()
    assert done == {"first": 400_000, "second": 400_000, "busy_at_150ns": 100_000}


def test_transfers_waiting_for_a_link_get_it_in_request_order():
    """Three 800 B transfers (100 ns each at 8 GB/s, no latency) asked for at 0, 1 and 2 ps:
    they finish at 100, 200 and 300 ns in the order they asked, first come first served."""
    sim, top, link = _link_system(8 * GB_PER_S, latency=0)
    done = []

    def sender(name, at_ps):
        yield sim.env.timeout(at_ps)
        yield from link.transfer(800)
        done.append((name, sim.now_ps))

    for at_ps, name in enumerate("abc"):
        top.add_process(sender, name, at_ps)
    sim.run()
    assert done == [("a", 100_000), ("b", 200_000), ("c", 300_000)]


def test_routes_over_the_same_links_in_opposite_orders_do_not_deadlock():
    """Links are taken in name order whatever order a route lists them: q holds b for
    100 ns; route [b, a] asks at 1 ps and route [a, b] at 2 ps. Taken as listed, the second
    route would hold a and wait for b while the first held b and waited for a. In name
    order, the first takes a and waits for b (100 ns), holds both to 200 ns; the second
    then holds both to 300 ns (800 B at 8 GB/s: 100 ns a transfer)."""
    sim = Simulator()
    top = Module("top", sim)
    a, b = Link("a", top, 8 * GB_PER_S, 0), Link("b", top, 8 * GB_PER_S, 0)
    done = []

    def transfer(name, at_ps, links):
        yield sim.env.timeout(at_ps)
        yield from hold_links(links, [800] * len(links))
        done.append((name, sim.now_ps))

    top.add_process(transfer, "q", 0, [b])
    top.add_process(transfer, "ba", 1, [b, a])
    top.add_process(transfer, "ab", 2, [a, b])
    sim.run()
    assert done == [("q", 100_000), ("ba", 200_000), ("ab", 300_000)]


def test_a_fifos_depth_histogram_counts_the_current_stretch():
    """One item put at 1 ns and never taken, looked at 5 ns: empty for 1 ns, then one deep
    for the 4 ns up to now (not yet booked to `depth_time_ps`, which only has the 1 ns, and
    only the depths reached: the histogram adds the depth 2 never reached)."""
    sim = Simulator()
    top = Module("top", sim)
    fifo = Fifo("fifo", top, capacity=2)

    def producer():
        yield sim.env.timeout(1_000)
        yield from fifo.put("x")

    top.add_process(producer)
    sim.run(until=5_000)
    assert fifo.depth_time_ps == [1_000, 0]
    assert fifo.depth_histogram_ps() == [1_000, 4_000, 0]


def test_a_pool_gives_its_whole_capacity_and_blocks_until_it_is_given_back():
    """A pool of 4: one take of all 4 at 0 is granted at once; a take of 1 at 1 ps waits
    until the 4 are given back at 1 ns (999 ps waited, `wait_ps`: the granted-at-once take
    adds nothing); a take of 5 can never be granted and is refused."""
    sim = Simulator()
    top = Module("top", sim)
    pool = Pool("pool", top, capacity=4)
    granted = []

    def whole():
        yield from pool.take(4)
        granted.append(("whole", sim.now_ps))
        yield sim.env.timeout(1_000)
        yield from pool.give(4)

    def one():
        yield sim.env.timeout(1)
        yield from pool.take(1)
        granted.append(("one", sim.now_ps))

    top.add_process(whole)
    top.add_process(one)
    sim.run()
    assert granted == [("whole", 0), ("one", 1_000)]
    assert pool.actions["take"] == 2 and pool.actions["give"] == 1
    assert pool.actions["wait_ps"] == 999
    with pytest.raises(ConfigError, match="request of 5 exceeds capacity 4"):
        next(pool.take(5))
