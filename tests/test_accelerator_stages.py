"""Closed forms of the tile pipeline's on-chip stages, each alone on one tile: the NoC's
multicast, unicast and gather, the selector's scan and the vector unit's lanes, in time and
in energy.

dense.yaml: 500 MHz (2 ns a cycle); a 4x4 mesh of 32 B/cycle links, 1 cycle a hop; the GLB's
port on r0_0 and a cluster on every router, both attached by one link; XY routing. So the
route from the port to the cluster at (x, y) takes 1 + (x + y) + 1 links, 8 to the far
corner, and the multicast tree to all 16 clusters takes 1 + 15 + 16 = 32 links. A byte pays
a hop (0.4 pJ a bit at 45 nm: a 1 mm link and the router it enters) over each link between
routers, the first router alone (0.3) over the port into the mesh, nothing into a cluster.
The 28 nm prices are Horowitz's 45 nm figures times (28/45)(0.9/0.9)^2 = 0.622
(arch/energy.py).
"""

from pathlib import Path

import pytest

from arch.accelerator import Accelerator
from desim.events import empty_table
from desim.experiment import load_arch
from desim.module import Simulator
from desim.stats import collect_stats

ARCH = Path(__file__).resolve().parent.parent / "configs" / "arch"
CYCLE_PS = 2_000
PS_PER_BYTE = 62.5            # one 32 B/cycle link at 500 MHz: 16 GB/s
SCALE_28NM = 28 / 45           # C V^2, both nodes at 0.9 V (arch/energy.py)
NOC_PJ_PER_BYTE_HOP = 0.4 * 8 * SCALE_28NM
NOC_PJ_PER_BYTE_PORT = 0.3 * 8 * SCALE_28NM


def _run(arch: str, **columns: int) -> tuple[Accelerator, dict[str, float], dict[str, int]]:
    """Replay one tile with these event-table columns; the run's time is the accelerator's,
    and its energy (pJ by component.action) and NoC byte-hops those of its one phase."""
    table = empty_table(1)
    for name, value in columns.items():
        table[name] = value
    sim = Simulator()
    acc = Accelerator(sim, load_arch(ARCH / arch))
    acc.replay([table])
    sim.run()
    (record,) = acc.records
    energy = acc.energy_pj(record.actions, record.since_ps, record.end_ps)
    noc = {path.split(".noc.")[1]: counts["bytes"]
           for path, counts in record.actions.items() if ".noc." in path}
    return acc, energy, noc


def test_a_multicast_crosses_each_link_of_its_tree_once():
    """32,000 bytes to all 16 clusters: every link of the 32-link tree carries them once,
    all at once: 1,000 cycles of serialization, then the 8 hops to the far corner. They
    enter the 16 routers once each: r0_0 from the port, the 15 others over a hop."""
    acc, energy, noc = _run("dense.yaml", multicast_bytes=32_000, active_clusters=16)
    assert acc.env.now == 32_000 * PS_PER_BYTE + 8 * CYCLE_PS == 2_016_000
    assert len(noc) == 32 and set(noc.values()) == {32_000}
    assert energy["noc.byte_hops"] == pytest.approx(15 * 32_000 * NOC_PJ_PER_BYTE_HOP)
    assert energy["noc.port_bytes"] == pytest.approx(32_000 * NOC_PJ_PER_BYTE_PORT)
    # each active cluster's local buffer receives the whole multicast block
    assert energy["local_buffers.write_bytes"] == pytest.approx(
        16 * 32_000 * acc.prices.local_buffer_pj_per_byte)


def test_one_active_cluster_is_the_nearest_two_links_away():
    acc, _, noc = _run("dense.yaml", multicast_bytes=32_000, active_clusters=1)
    assert noc == {"glb->r0_0": 32_000, "r0_0->cluster_r0_0": 32_000}
    assert acc.env.now == 32_000 * PS_PER_BYTE + 2 * CYCLE_PS


def test_a_unicast_splits_into_equal_shares_along_each_clusters_route():
    """16,000 bytes to 16 clusters: 1,000 each. The port's link carries all 16 shares (the
    bound: 500 cycles); r0_0 -> r1_0 the 12 shares of the clusters at x >= 1 (routers are
    named r<x>_<y>; XY goes along x first, then y). Bytes over links: each share times its
    route, 1,000 x (16 x 2 + the 48 mesh hops from (0, 0) to the 16 routers: 4 x (0+1+2+3)
    in x and as many in y); priced, the 48,000 hops and the 16,000 bytes into r0_0."""
    acc, energy, noc = _run("dense.yaml", unicast_bytes=16_000, active_clusters=16)
    assert noc["glb->r0_0"] == 16_000 and noc["r0_0->r1_0"] == 12_000
    assert noc["r3_2->r3_3"] == 1_000 and noc["r3_3->cluster_r3_3"] == 1_000
    assert sum(noc.values()) == 1_000 * (16 * 2 + 48) == 80_000
    assert acc.env.now == 16_000 * PS_PER_BYTE + 8 * CYCLE_PS == 1_016_000
    assert energy["noc.byte_hops"] == pytest.approx(48_000 * NOC_PJ_PER_BYTE_HOP)
    assert energy["noc.port_bytes"] == pytest.approx(16_000 * NOC_PJ_PER_BYTE_PORT)


def test_a_gather_takes_each_clusters_xy_route_back():
    """The unicast's shares, from each cluster to the port along x first: so r1_0 -> r0_0
    now carries the 3 clusters at y = 0, x >= 1, and r0_1 -> r0_0 the 12 at y >= 1. The
    routes are as long as the unicast's: the same byte-hops and time; the 16 shares enter
    the mesh from their clusters' ports, and leave it into the port for nothing more."""
    acc, energy, noc = _run("dense.yaml", gather_bytes=16_000, active_clusters=16)
    assert noc["r0_0->glb"] == 16_000 and noc["r0_1->r0_0"] == 12_000
    assert noc["r1_0->r0_0"] == 3_000
    assert sum(noc.values()) == 80_000
    assert acc.env.now == 16_000 * PS_PER_BYTE + 8 * CYCLE_PS
    assert energy["noc.byte_hops"] == pytest.approx(48_000 * NOC_PJ_PER_BYTE_HOP)
    assert energy["noc.port_bytes"] == pytest.approx(16_000 * NOC_PJ_PER_BYTE_PORT)


def test_the_selector_scans_its_entries_per_cycle_at_its_price():
    """hppu_like.yaml's selector: 256 entries a cycle, 0.03 pJ an entry at 45 nm. 2,561
    entries take ceil(2561 / 256) = 11 cycles."""
    acc, energy, _ = _run("hppu_like.yaml", selector_entries=2_561)
    assert acc.env.now == 11 * CYCLE_PS
    assert acc.selector.actions["entries"] == 2_561
    assert energy["selector.entries"] == pytest.approx(2_561 * 0.03 * SCALE_28NM)


def test_the_vector_unit_does_lanes_ops_a_cycle_each_priced_as_a_mac():
    """dense.yaml's 64 lanes: 40,001 ops take ceil(40001 / 64) = 626 cycles; an op is priced
    as the PEs' MAC, an fp16 multiply and an fp32 add: (1.1 + 0.9) pJ at 45 nm."""
    acc, energy, noc = _run("dense.yaml", vector_ops=40_001)
    assert acc.env.now == 626 * CYCLE_PS
    assert energy["vector_unit.ops"] == pytest.approx(40_001 * 2.0 * SCALE_28NM)
    assert energy["macs.macs"] == 0 and not noc   # its operands do not cross the NoC


def test_a_full_buffer_stalls_the_fetcher_and_says_how_long():
    """Three tiles with nothing to read from DRAM, each a 32,000-byte multicast (2,016,000 ps,
    as above): the buffer holds two tiles' operands, so the third waits for the first's half,
    given back as its distribution ends, 2,016,000 ps after it asked at 0 (`wait_ps` of the
    pool `operand_halves`); tiles without results take no result half."""
    table = empty_table(3)
    table["multicast_bytes"] = 32_000
    table["active_clusters"] = 16
    sim = Simulator()
    acc = Accelerator(sim, load_arch(ARCH / "dense.yaml"))
    acc.replay([table])
    sim.run()
    assert acc.env.now == 3 * 2_016_000
    assert dict(acc.operand_halves.actions) == {"take": 3, "give": 3, "wait_ps": 2_016_000}
    assert not acc.result_halves.actions
    pool = collect_stats(sim)["modules"]["top.operand_halves"]
    assert pool == {"actions": {"give": 3, "take": 3, "wait_ps": 2_016_000}, "capacity": 2,
                    "kind": "Pool"}  # no busy time: a pool does no timed work


def test_the_buffer_adds_a_reduction_s_partial_sums_as_they_come_back():
    """A tile whose reduction was dealt to the 16 clusters: 16,000 B of fp32 partial sums
    come back (dense.yaml accumulates in fp32), 250 outputs' 16 each, and the buffer adds
    the 15 x 250 = 3,750 after each output's first: it reads those running sums (15,000 B)
    and writes all 16,000 B, beside the gather, which takes as long as any 16,000 B gather
    (its accesses take 61 and 65 cycles of its banks, under the port's 500). Each add is
    an fp32 add, Horowitz's 0.9 pJ at 28 nm."""
    table = empty_table(1)
    table["gather_bytes"] = table["glb_write_bytes"] = 16_000
    table["active_clusters"], table["reduced_psums"], table["dealt"] = 16, 3_750, 2
    sim = Simulator()
    acc = Accelerator(sim, load_arch(ARCH / "dense.yaml", ["mapping.partition=reduction"]))
    acc.replay([table])
    sim.run()
    (record,) = acc.records
    energy = acc.energy_pj(record.actions, record.since_ps, record.end_ps)
    assert acc.env.now == 16_000 * PS_PER_BYTE + 8 * CYCLE_PS
    assert acc.glb.actions == {"write_bytes": 16_000, "read_bytes": 15_000, "psum_adds": 3_750}
    assert energy["global_buffer.psum_adds"] == pytest.approx(3_750 * 0.9 * SCALE_28NM)
    assert energy["global_buffer.read_bytes"] == pytest.approx(
        15_000 * acc.prices.global_buffer_pj_per_byte)
