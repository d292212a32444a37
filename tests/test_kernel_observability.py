"""The kernel's observability: queueing laws, deadlock reports, traces, waveforms, statistics,
and the bench, all on small systems that run in well under a second each."""

import io
import json
import random
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import pytest
from vcd.reader import TokenKind, tokenize

from desim.bench import run_bench
from desim.channels import Fifo, Link, Pool, hold_links
from desim.errors import DeadlockError
from desim.module import Module, Simulator
from desim.stats import busiest_part, busy_shares, collect_stats, write_stats

GB_PER_S = 10**9


# -- queueing ---------------------------------------------------------------------------------

def test_littles_law_on_an_md1_queue():
    """Poisson arrivals, deterministic service: the FIFO's time-weighted depth must equal
    arrival rate x mean wait (Little), and match Pollaczek-Khinchine for M/D/1."""
    mean_gap_ps, service_ps, customers = 10_000, 6_000, 20_000
    rng = random.Random(1)
    sim = Simulator()
    top = Module("top", sim)
    queue = Fifo("queue", top, capacity=1_000)  # never full: arrivals are never blocked
    server = Module("server", top)
    waits: list[int] = []

    def arrivals() -> Generator:
        for _ in range(customers):
            yield sim.env.timeout(round(rng.expovariate(1 / mean_gap_ps)))
            yield from queue.put(sim.now_ps)

    def serve() -> Generator:
        while True:
            arrived = yield from queue.get()
            waits.append(sim.now_ps - arrived)
            yield sim.env.timeout(service_ps)
            server.busy_ps += service_ps

    top.add_process(arrivals)
    server.add_process(serve, daemon=True)
    sim.run()
    assert len(waits) == customers and queue.depth == 0
    stats = collect_stats(sim)["modules"]
    total_ps = sim.now_ps
    arrival_rate = customers / total_ps
    wait_q = sum(waits) / customers
    l_q = stats["top.queue"]["depth_mean"]
    assert l_q == pytest.approx(arrival_rate * wait_q, rel=0.02)
    # whole system: queue + server, each customer staying wait + service
    l_system = l_q + stats["top.server"]["utilization"]
    assert l_system == pytest.approx(arrival_rate * (wait_q + service_ps), rel=0.02)
    rho = service_ps / mean_gap_ps
    assert l_q == pytest.approx(rho**2 / (2 * (1 - rho)), rel=0.10)  # M/D/1: 0.45


def test_busy_shares_name_each_timed_part_and_a_network_by_its_busiest_link():
    """A unit busy 3 of 10 us reads 0.3; a NoC of two links (busy 2 and 5 us) reads its
    busiest link's 0.5, named; a FIFO that waited on both does no timed work: left out."""
    sim = Simulator()
    top = Module("top", sim)
    unit, noc = Module("unit", top), Module("noc", top)
    links = [Link(name, noc, 10**12, 0) for name in ("a->b", "b->c")]  # a byte a ps
    fifo = Fifo("fifo", top, capacity=2)

    def work() -> Generator:
        yield from unit.busy_for(3_000_000, "tile")
        yield from fifo.put(1)
        yield from hold_links([links[0]], [2_000_000])
        yield from hold_links([links[1]], [5_000_000])
        yield from fifo.get()

    top.add_process(work)
    sim.run()
    assert sim.now_ps == 10_000_000
    shares, busiest = busy_shares(collect_stats(sim), "top")
    assert shares == {"noc": 0.5, "unit": 0.3}
    assert busiest == {"noc": "b->c"}
    idle = Simulator()   # no link ever busy: none is the busiest
    top = Module("top", idle)
    Link("a->b", Module("noc", top), 10**12, 0)
    idle.run()
    assert busy_shares(collect_stats(idle), "top") == ({"noc": 0.0}, {})


def test_of_links_a_multicast_holds_together_the_one_that_carried_most_is_named():
    """A transfer holds every link of its route as long: a port and two branches busy 4 us
    each, the port carrying 300 bytes and the branches 200 and 100; the port is named,
    over the whole run and over a job's span alike, whatever the names' order."""
    sim = Simulator()
    top = Module("top", sim)
    noc = Module("noc", top)
    port, left, right = (Link(name, noc, 10**12, 0) for name in ("z_port", "a->b", "a->c"))

    def multicast() -> Generator:
        sim.env.active_process.job = "j"
        yield from hold_links([port, left, right], [300, 200, 100])
        yield sim.env.timeout(4_000_000 - 300)  # (a byte a ps: the held time is the largest)

    top.add_process(multicast)
    sim.run()
    stats = collect_stats(sim)
    assert {p: m["busy_ps"] for p, m in stats["modules"].items() if "->" in p or "port" in p} \
        == {"top.noc.z_port": 300, "top.noc.a->b": 300, "top.noc.a->c": 300}
    assert busy_shares(stats, "top") == ({"noc": 300 / 4_000_000}, {"noc": "z_port"})
    booked = sim.booked["j"]
    assert busiest_part({path: c["busy_ps"] for path, c in booked.items()}, {}, "top", 300,
                        {path: c["bytes"] for path, c in booked.items()}) == \
        ("noc", "z_port", 1.0)
    # without the bytes, the first name
    assert busy_shares({"modules": {p: {"utilization": 0.5} for p in
                                    ("top.noc.z", "top.noc.a")}}, "top")[1] == {"noc": "a"}


def test_a_part_serving_two_transactions_at_once_reads_the_mean_of_its_two_shares():
    """A dual-ported part, busy 10 us on one port and 6 us on the other in a 10 us run:
    stats.json's utilization 1.6 (its busy time over the run's), its share 0.8."""
    sim = Simulator()
    top = Module("top", sim)
    buffer = Module("buffer", top)
    buffer.concurrency = 2

    def port(us: int) -> Generator:
        yield from buffer.busy_for(us * 1_000_000, "access")

    top.add_process(port, 10)
    top.add_process(port, 6)
    sim.run()
    stats = collect_stats(sim)
    assert stats["modules"]["top.buffer"]["utilization"] == 1.6
    assert stats["modules"]["top.buffer"]["concurrency"] == 2
    assert busy_shares(stats, "top") == ({"buffer": 0.8}, {})


def test_busy_time_is_booked_to_the_job_served_and_names_each_jobs_busiest_part():
    """Two jobs overlapping in time: job 1 keeps a unit busy 3 us and a link 1 us, job 2
    the unit 2 us and the link 4 us. Each job's booked busy time is its own (stats.json's
    busy_ps is their sum), and over a 5 us span job 1's busiest part is the unit (0.6),
    job 2's the network, by its link a->b (0.8), named."""
    sim = Simulator()
    top = Module("top", sim)
    unit, noc = Module("unit", top), Module("noc", top)
    link = Link("a->b", noc, 10**12, 0)  # a byte a ps

    def job(name: int, unit_us: int, link_us: int) -> Generator:
        sim.env.active_process.job = name
        yield from unit.busy_for(unit_us * 1_000_000, "tile")
        yield from hold_links([link], [link_us * 1_000_000])

    top.add_process(job, 1, 3, 1)
    top.add_process(job, 2, 2, 4)
    sim.run()
    busy = {j: {path: c["busy_ps"] for path, c in sim.booked[j].items()} for j in (1, 2)}
    assert busy == {1: {"top.unit": 3_000_000, "top.noc.a->b": 1_000_000},
                    2: {"top.unit": 2_000_000, "top.noc.a->b": 4_000_000}}
    assert collect_stats(sim)["modules"]["top.unit"]["busy_ps"] == 5_000_000
    assert "busy_ps" not in unit.actions  # what a module did, not how long it took
    ones = {"top.unit": 1, "top.noc.a->b": 1}
    assert busiest_part(busy[1], ones, "top", 5_000_000) == ("unit", "", 0.6)
    assert busiest_part(busy[2], ones, "top", 5_000_000) == ("noc", "a->b", 0.8)


def test_busiest_part_divides_by_concurrency_breaks_ties_by_name_and_skips_empty_spans():
    """A dual-ported buffer busy 1.6 of a 1 us span reads 0.8, under DRAM's 0.9; equal
    shares go to the first name; an empty span or an idle one names no part."""
    busy = {"t.buffer": 1_600_000, "t.dram": 900_000, "t.noc.x->y": 300_000}
    concurrency = {"t.buffer": 2}
    assert busiest_part(busy, concurrency, "t", 1_000_000) == ("dram", "", 0.9)
    assert busiest_part({"t.b": 5, "t.a": 5}, {}, "t", 10) == ("a", "", 0.5)
    assert busiest_part(busy, concurrency, "t", 0) == ("", "", 0.0)
    assert busiest_part({"t.dram": 0}, {}, "t", 10) == ("", "", 0.0)


def test_bounded_fifo_blocks_then_resumes_and_keeps_a_depth_histogram():
    sim = Simulator()
    top = Module("top", sim)
    fifo = Fifo("fifo", top, capacity=2)
    put_times = []

    def producer() -> Generator:
        for i in range(3):
            yield from fifo.put(i)
            put_times.append(sim.now_ps)

    def consumer() -> Generator:
        for wait_ps in (1_000, 2_000, 3_000):
            yield sim.env.timeout(wait_ps)
            yield from fifo.get()

    top.add_process(producer)
    top.add_process(consumer)
    sim.run()
    assert put_times == [0, 0, 1_000]  # the third put waited for the get at 1 ns
    stats = collect_stats(sim)["modules"]["top.fifo"]
    # full from 0 to 3 ns (a get and the blocked put at 1 ns), one item until 6 ns
    assert stats["depth_hist_ps"] == [0, 3_000, 3_000]
    assert stats["depth_mean"] == 1.5 and stats["depth_max"] == 2
    assert stats["actions"] == {"get": 3, "put": 3}


# -- deadlock ---------------------------------------------------------------------------------

def _ping_pong() -> Simulator:
    """Each process waits to get from the other's FIFO before putting: a cycle."""
    sim = Simulator()
    top = Module("top", sim)
    to_ping, to_pong = Fifo("to_ping", top, 1), Fifo("to_pong", top, 1)

    def ping() -> Generator:
        item = yield from to_ping.get()
        yield from to_pong.put(item)

    def pong() -> Generator:
        item = yield from to_pong.get()
        yield from to_ping.put(item)

    Module("a", top).add_process(ping)
    Module("b", top).add_process(pong)
    return sim


def test_a_cycle_of_waits_is_reported_as_a_deadlock_naming_both_processes():
    sim = _ping_pong()
    with pytest.raises(DeadlockError) as caught:
        sim.run()  # returns at once: the queue empties, the check runs once
    assert sim.now_ps == 0  # nothing ever happened: found when the queue emptied
    message = str(caught.value)
    assert "top.a: process 'ping' waits for Fifo top.to_ping get" in message
    assert "top.b: process 'pong' waits for Fifo top.to_pong get" in message
    assert caught.value.blocked == [("top.a", "ping"), ("top.b", "pong")]


def test_run_until_an_event_that_never_comes_reports_the_deadlock_too():
    sim = _ping_pong()
    with pytest.raises(DeadlockError, match="ping"):
        sim.run(until=sim.env.event())


def _source_and_stage(daemon: bool) -> Simulator:
    sim = Simulator()
    top = Module("top", sim)
    q = Fifo("q", top, 2)

    def source() -> Generator:
        for i in range(3):
            yield from q.put(i)

    def stage() -> Generator:
        while True:
            yield from q.get()
            yield sim.env.timeout(10)

    top.add_process(source)
    top.add_process(stage, daemon=daemon)
    return sim


def test_daemons_waiting_on_an_empty_queue_are_not_a_deadlock():
    sim = _source_and_stage(daemon=True)
    sim.run()  # no error: the stage is meant to wait forever once the work is done
    assert sim.now_ps == 30
    with pytest.raises(DeadlockError, match="process 'stage' waits for Fifo top.q get"):
        _source_and_stage(daemon=False).run()  # the same loop, not marked: it counts


def test_a_transfer_waiting_for_a_link_names_the_link_and_its_holder():
    sim = Simulator()
    top = Module("top", sim)
    link = Link("l0", top, GB_PER_S, 0)
    top.never = sim.env.event()

    def hog() -> Generator:
        assert link.take() is None  # free: held at once
        yield top.never

    def sender() -> Generator:
        yield from link.transfer(64)

    top.add_process(hog)
    top.add_process(sender)
    with pytest.raises(DeadlockError) as caught:
        sim.run()
    message = str(caught.value)
    assert "process 'hog' waits for event top.never" in message
    assert "process 'sender' waits for link top.l0 (held by top: 'hog')" in message


# -- tracing ----------------------------------------------------------------------------------

class _Buffer(Module):
    """A module with two ports whose accesses overlap: traced on sub-tracks."""

    def access(self, port: str, duration_ps: int) -> Generator:
        start = int(self.env.now)
        yield self.env.timeout(duration_ps)
        self.busy_ps += duration_ps
        self.traced(port, start, start + duration_ps, track=port)


def _traced_system(tmp: Path | None) -> Simulator:
    sim = Simulator()
    top = Module("top", sim)
    a, b = Link("a", top, 8 * GB_PER_S, 1_000), Link("b", top, 4 * GB_PER_S, 0)
    q = Fifo("q", top, 2)
    slots = Pool("slots", top, 2)  # the items in q and in the producer's hands
    buf = _Buffer("buf", top)

    def producer() -> Generator:
        for i in range(6):
            yield from slots.take(1)
            yield from hold_links([a, b], [800, 400 * (i % 2)])
            yield from q.put(i)

    def consumer() -> Generator:
        for _ in range(6):
            yield from q.get()
            yield from slots.give(1)
            yield from a.transfer(1_600)
            # two overlapping reads on one port: the tracer must split them into lanes
            yield sim.env.all_of([sim.env.process(buf.access("read", 300)),
                                  sim.env.process(buf.access("read", 200)),
                                  sim.env.process(buf.access("write", 250))])

    top.add_process(producer)
    top.add_process(consumer)
    if tmp is not None:
        sim.enable_tracing(tmp / "trace.json", tmp / "waves.vcd")
    return sim


def test_tracing_is_off_by_default_and_writes_nothing():
    sim = _traced_system(None)
    sim.run()
    assert all(m.tracer is None for m in sim.modules())
    assert sim.finish_tracing() == []


def test_the_trace_is_valid_json_without_overlapping_slices(tmp_path: Path):
    sim = _traced_system(tmp_path)
    sim.run()
    assert sim.finish_tracing() == [tmp_path / "trace.json", tmp_path / "waves.vcd"]
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            assert isinstance(e["ts"], float) and e["dur"] > 0
            tracks[e["pid"], e["tid"]].append(e)
    assert {names[tid] for _, tid in tracks} == {
        "top.a", "top.b", "top.buf.read", "top.buf.read#2", "top.buf.write"}
    for slices in tracks.values():
        slices.sort(key=lambda e: e["ts"])
        for first, second in zip(slices, slices[1:], strict=False):
            assert first["ts"] + first["dur"] <= second["ts"]
    link_a = [e for e in tracks[0, [t for t, n in names.items() if n == "top.a"][0]]]
    assert len(link_a) == 12  # 6 routed transfers + 6 direct ones
    assert any(e["ph"] == "C" and e["name"] == "top.q.depth" for e in events)
    in_use = [e["args"]["in_use"] for e in events
              if e["ph"] == "C" and e["name"] == "top.slots.in_use"]
    assert in_use[0] == 1 and max(in_use) == 2 and in_use[-1] == 0


def test_the_vcd_parses_back_with_monotonic_times(tmp_path: Path):
    sim = _traced_system(tmp_path)
    sim.run()
    sim.finish_tracing()
    tokens = list(tokenize(io.BytesIO((tmp_path / "waves.vcd").read_bytes())))
    timescale = next(t.timescale for t in tokens if t.kind is TokenKind.TIMESCALE)
    assert (int(timescale.magnitude), timescale.unit.value) == (1, "ps")
    scope: list[str] = []
    signals = {}  # "top.a.busy" -> id code
    for t in tokens:
        if t.kind is TokenKind.SCOPE:
            scope.append(t.scope.ident)
        elif t.kind is TokenKind.UPSCOPE:
            scope.pop()
        elif t.kind is TokenKind.VAR:
            signals[".".join([*scope, t.var.reference])] = t.var.id_code
    # (no top.busy: the container does no work of its own, and a wire stuck at 0 said it idled)
    assert sorted(signals) == ["top.a.busy", "top.b.busy", "top.buf.busy",
                               "top.q.depth", "top.slots.in_use"]
    times = [t.time_change for t in tokens if t.kind is TokenKind.CHANGE_TIME]
    assert times == sorted(set(times)) and times[-1] == sim.now_ps
    busy_a = [t.scalar_change.value for t in tokens if t.kind is TokenKind.CHANGE_SCALAR
              and t.scalar_change.id_code == signals["top.a.busy"]]
    assert busy_a[:2] == ["1", "0"] and busy_a[-1] == "0"  # busy from 0 ps, idle at the end
    depths = {int(t.vector_change.value) for t in tokens if t.kind is TokenKind.CHANGE_VECTOR
              and t.vector_change.id_code == signals["top.q.depth"]}
    assert depths <= {0, 1, 2} and 1 in depths
    in_use = [int(t.vector_change.value) for t in tokens if t.kind is TokenKind.CHANGE_VECTOR
              and t.vector_change.id_code == signals["top.slots.in_use"]]
    assert set(in_use) == {0, 1, 2} and in_use[-1] == 0  # taken, full, all given back


# -- statistics -------------------------------------------------------------------------------

def test_two_runs_give_byte_identical_stats(tmp_path: Path):
    for run in ("one", "two"):
        sim = _traced_system(None)
        sim.run()
        write_stats(collect_stats(sim), tmp_path / run)
    now = int(sim.env.now)
    first = (tmp_path / "one" / "stats.json").read_bytes()
    assert first == (tmp_path / "two" / "stats.json").read_bytes()
    assert (tmp_path / "one" / "stats.txt").read_bytes() == \
        (tmp_path / "two" / "stats.txt").read_bytes()
    stats = json.loads(first)
    link = stats["modules"]["top.a"]
    # link a (8 GB/s) moves 6 x 800 B (100 ns each) and 6 x 1,600 B (200 ns each)
    assert link["transfers"] == 12 and link["busy_ps"] == 6 * 100_000 + 6 * 200_000
    assert link["utilization"] == link["busy_ps"] / now
    # the FIFO and the module holding the others do no timed work: no busy time, rather
    # than a utilization of 0 that would say they idled
    for idle in ("top", "top.q"):
        assert "busy_ps" not in stats["modules"][idle]
        assert "utilization" not in stats["modules"][idle]
    lines = (tmp_path / "one" / "stats.txt").read_text().splitlines()[1:-1]
    names = [line.split()[0] for line in lines]
    assert names == sorted(names) and "top.q.depth_hist_ps::2" in names
    assert len({line.index("#") for line in lines}) == 1  # aligned
    # each value as stats.json has it, to the last digit (six decimals had printed
    # 7.163285e-05 as 0.000072)
    text = {line.split()[0]: line.split()[1] for line in lines}
    assert text["top.a.utilization"] == repr(link["utilization"])
    assert float(text["top.a.utilization"]) == link["utilization"]
    said = {line.split()[0]: line.split("#", 1)[1].strip() for line in lines}
    assert said["top.a.actions.bytes"] == "action count (bytes)"  # 12 transfers' bytes
    assert said["top.a.actions.transfers"] == "action count"


# -- bench ------------------------------------------------------------------------------------

def test_run_bench_reports_rates_and_ratios(tmp_path: Path):
    result = run_bench(tmp_path / "bench.json", items=40, stages=2, repeats=1, memory_items=50)
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["transactions"] == 80
    assert set(result["transactions_per_s"]) == {
        "simpy", "simpy_resource", "desim", "desim_again", "desim_unhooked", "desim_traced",
        "desim_timed", "desim_timed_again", "desim_timed_unhooked"}
    assert result["noise_a_a"] == abs(result["transactions_per_s"]["desim"]
                                      / result["transactions_per_s"]["desim_again"] - 1)
    assert all(rate > 0 for rate in result["transactions_per_s"].values())
    assert set(result["ratios"]) == {"desim_vs_simpy", "desim_vs_simpy_resource",
                                     "hooks_off_vs_unhooked", "timed_hooks_off_vs_unhooked",
                                     "traced_vs_off"}
    assert all(v > 0 for v in result["memory_bytes_per_pending"].values())
    # the floor schedules what desim schedules; SimPy with a Resource a request and a
    # release more per transaction
    events = result["events_scheduled"]
    assert events["simpy"] == events["desim"] == events["desim_unhooked"]
    assert events["simpy_resource"] - events["simpy"] == 2 * 80
    assert result["events_differ"] == []


def test_bench_refuses_cases_that_did_different_work(monkeypatch):
    """A SimPy case whose sink is starved (fewer items delivered, fewer transactions) is
    caught, not timed as if it had done the work."""
    from desim.bench import load_cases

    cases = load_cases()

    def starved(items: int, stages: int):
        return cases.raw_simpy(items - 1, stages)

    monkeypatch.setitem(cases.TIMED_CASES, "simpy", starved)
    with pytest.raises(RuntimeError, match="cases disagree on the work done"):
        run_bench(None, items=20, stages=2, repeats=1, memory_items=10)


def test_bench_flags_a_ratio_between_cases_that_scheduled_different_events(monkeypatch):
    """The floor doing other events than desim (here SimPy with a Resource per link) is
    named, and the ratio to it is not judged against the target."""
    from rich.console import Console

    from desim.bench import load_cases, print_bench

    cases = load_cases()
    monkeypatch.setitem(cases.TIMED_CASES, "simpy", cases.simpy_with_resource)
    result = run_bench(None, items=20, stages=2, repeats=1, memory_items=10)
    assert any(line.startswith("desim scheduled") for line in result["events_differ"])
    console = Console(record=True, width=200)
    print_bench(result, console)
    text = console.export_text()
    assert "events differ" in text and "NOT COMPARABLE" in text, text


def test_the_bench_copies_without_hooks_do_what_the_kernel_does():
    """kernel_cases' copies of `hold_links`, `Fifo._set_depth`, `Pool.take`/`give` and
    `Module.busy_for` without their tracing hooks: the same statistics and booked actions as
    the kernel's own (the hook cost is measured against them, so they must stay in step)."""
    from desim.bench import load_cases

    cases = load_cases()
    for build in (lambda sim, hooks: cases._Pipeline(sim, 30, 3) if hooks else
                  cases._Pipeline(sim, 30, 3, fifo=cases._UnhookedFifo,
                                  hold=cases._unhooked_hold_links),
                  lambda sim, hooks: cases._TimedPipeline(sim, 30, 3, hooks=hooks)):
        seen = []
        for hooks in (True, False):
            sim = Simulator()
            top = build(sim, hooks)
            sim.run()
            stats = collect_stats(sim)
            for module in stats["modules"].values():
                module.pop("kind")
            seen.append((stats, {job: {p: dict(c) for p, c in paths.items()}
                                 for job, paths in sim.booked.items()}, top.work()))
        assert seen[0] == seen[1]


def test_queued_bytes_are_net_of_the_fifos_own_cost():
    """A FIFO's fixed cost (its depth histogram is sized by its capacity) is not charged to
    the items queued in it: per item the same at capacity n and at capacity 100 n."""
    from desim.bench import load_cases

    cases = load_cases()
    at_n, at_100n = cases.desim_queued_bytes(500), cases.desim_queued_bytes(500, 50_000)
    assert abs(at_100n - at_n) < 2, (at_n, at_100n)
