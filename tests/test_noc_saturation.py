"""NoC saturation under uniform random traffic: accepted throughput levels off where the
bisection bandwidth says.

Setup: a 4x4 mesh (`arch.noc.build_noc`), links of b = 16 bytes a cycle, an endpoint
attached to every router by a port link of 4b (so injection and ejection never bind), XY
routes (`RouteTable`). Every endpoint injects packets of L = 64 bytes as a Poisson process
(seeded `random.Random`) to a destination drawn uniformly among the other N - 1 endpoints;
each packet is one transaction holding every link of its route at once
(`desim.channels.hold_links`), as the accelerator's transfers do.

Bound. Let B be `bisection_bandwidth_bytes_per_cycle` (one direction: k links of b for a
k x k mesh, here 4b = 64 B/cycle) and lambda the bytes a node injects a cycle. Of the N/2
nodes on one side of the cut, a packet crosses it with probability (N/2)/(N-1), so the
traffic crossing one way is (N/2) * lambda * (N/2)/(N-1) <= B, i.e.

    lambda_sat = 4 * B * (N - 1) / N**2        (N = 16: 0.9375 b = 15 B/cycle per node)

(Dally and Towles, "Principles and Practices of Interconnection Networks", 3.3.1: uniform
traffic loads the bisection channels most; XY routing on a mesh balances them so the bound
is tight for an ideal flow control.) Saturation is where the accepted throughput first falls
short of the offered load (by 5% here). With links held one after the other (store and
forward, close to wormhole for throughput) the mesh saturates between 0.8x and 1.2x of
lambda_sat. Holding a whole route at once (what `Noc` does) wastes the links a packet has
taken while it waits for the others and saturates near 0.5x: a stated pessimism of the
transaction-level model against wormhole routers. (Above saturation the accepted mix skews
towards packets that do not cross the cut, so accepted throughput alone may pass the bound;
hence the test on accepted versus offered.)
"""

from __future__ import annotations

import random
from collections.abc import Generator

import pytest

from arch.noc import NocSpec, RouteTable, attach, bisection_bandwidth_bytes_per_cycle, build_noc
from desim.channels import Link, hold_links
from desim.clock import Clock
from desim.module import Module, Simulator

K, B_LINK, PACKET = 4, 16.0, 64
N = K * K
WARMUP, WINDOW = 500, 3000  # cycles


def lambda_sat(bisection: float) -> float:
    """Bytes a cycle per node at which uniform random traffic fills the bisection."""
    return 4 * bisection * (N - 1) / N**2


def accepted_throughput(offered: float, seed: int = 1, whole_route: bool = True
                        ) -> tuple[float, float]:
    """(accepted bytes a cycle per node over the window, bisection B) at `offered` B/cycle.

    `whole_route`: a packet holds every link of its route at once (the accelerator's
    transfers); else it holds one link after the other (store and forward)."""
    graph = build_noc(NocSpec(topology="mesh", shape=[K, K], link_bandwidth_bytes_per_cycle=B_LINK,
                              hop_latency_cycles=1, routing="xy"))
    routers = sorted(graph)
    bisection = bisection_bandwidth_bytes_per_cycle(graph)
    for r in routers:
        attach(graph, f"ep_{r}", "pe_cluster", r, 4 * B_LINK, 1)
    table = RouteTable(graph, "xy")
    sim = Simulator()
    top = Module("noc", sim)
    clock = Clock.from_mhz(1000.0)
    links = {e: Link(f"{e[0]}->{e[1]}", top, graph.edges[e]["bandwidth_bytes_per_cycle"]
                     * clock.frequency_hz, clock.cycles(graph.edges[e]["latency_cycles"]))
             for e in graph.edges}
    endpoints = [f"ep_{r}" for r in routers]
    rng = random.Random(seed)
    rate = offered / PACKET  # packets a cycle per node
    start, end = clock.cycles(WARMUP), clock.cycles(WARMUP + WINDOW)
    delivered = [0]

    def packet(src: str, dst: str) -> Generator:
        route = [links[e] for e in table.route(src, dst)]
        if whole_route:
            yield from hold_links(route, [PACKET] * len(route))
        else:
            for link in route:
                yield from hold_links([link], [PACKET])
        if start <= sim.env.now <= end:
            delivered[0] += PACKET

    def source(src: str) -> Generator:
        others = [e for e in endpoints if e != src]
        while sim.env.now < end:
            yield sim.env.timeout(max(1, round(rng.expovariate(rate) * clock.period_ps)))
            sim.env.process(packet(src, rng.choice(others)))

    for ep in endpoints:
        top.add_process(source, ep)
    sim.run(until=end)
    return delivered[0] / (N * WINDOW), bisection


def test_bound_from_the_graph() -> None:
    _, bisection = accepted_throughput(0.1)
    assert bisection == K * B_LINK  # 4 links of 16 B/cycle across the middle
    assert lambda_sat(bisection) == pytest.approx(15.0)


def saturated(offered_fraction: float, whole_route: bool) -> bool:
    """Whether the network accepts less than 95% of `offered_fraction` of the bound."""
    bound = lambda_sat(K * B_LINK)
    got, _ = accepted_throughput(offered_fraction * bound, whole_route=whole_route)
    return got < 0.95 * offered_fraction * bound


def test_store_and_forward_saturates_at_the_bisection_bound() -> None:
    """Links held one after the other: everything offered is accepted at 0.8x the bound,
    not at 1.2x (measured: 0.99x accepted at 1.0x offered, 0.87x of 1.2x): saturation
    between 0.8x and 1.2x of lambda_sat."""
    assert not saturated(0.8, whole_route=False)
    assert saturated(1.2, whole_route=False)


def test_whole_route_holding_saturates_near_half_the_bound() -> None:
    """The accelerator's transfers hold their whole route at once (circuit-like): a packet
    keeps the links it got idle while it waits for the rest, so the mesh saturates at about
    half the bisection bound (measured: 0.40x accepted of 0.4x offered, 0.47x of 0.5x,
    0.49x of 0.6x and flat at ~0.49x beyond): pessimistic against wormhole routing."""
    assert not saturated(0.4, whole_route=True)
    assert saturated(0.6, whole_route=True)
    bound = lambda_sat(K * B_LINK)
    plateau = accepted_throughput(2.0 * bound)[0] / bound
    assert 0.4 <= plateau <= 0.6


@pytest.mark.slow
def test_saturation_sweep() -> None:
    """The whole curves, for a reader: accepted / bound against offered / bound."""
    bound = lambda_sat(K * B_LINK)
    for whole in (True, False):
        curve = {f: accepted_throughput(f * bound, whole_route=whole)[0] / bound
                 for f in (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)}
        for f, got in curve.items():
            assert got <= f * 1.05
        assert curve[0.2] == pytest.approx(0.2, rel=0.1)
