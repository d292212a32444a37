"""The NoC graph: generator sizes in closed form, XY and shortest routes, multicast trees,
bisection bandwidth, and the errors bad topologies raise."""

import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arch.noc import (
    Noc,
    NocSpec,
    RouteTable,
    attach,
    bisection_bandwidth_bytes_per_cycle,
    build_noc,
    check_connected,
    crossbar,
    from_edges,
    mesh,
    multicast_tree,
    ring,
    route,
    torus,
    tree,
)
from desim.clock import Clock
from desim.configio import validate
from desim.errors import ConfigError
from desim.module import Module, Simulator

BW, LAT = 32.0, 1
FAST = settings(max_examples=60, deadline=None)


def with_clusters(graph: nx.DiGraph, glb_router: str = "r0_0") -> nx.DiGraph:
    """A cluster at every router and the global buffer at `glb_router`, as the accelerator."""
    for r in sorted(graph):
        attach(graph, f"cluster_{r}", "pe_cluster", r, BW, LAT)
    attach(graph, "glb", "sram", glb_router, BW, LAT)
    return graph


def nodes_of(links) -> list[str]:
    """The node sequence of a route, checking that its links follow on from each other."""
    nodes = [links[0][0]]
    for u, v in links:
        assert u == nodes[-1]
        nodes.append(v)
    return nodes


def assert_route_is_a_walk(graph: nx.DiGraph, links, src: str, dst: str) -> None:
    if src == dst:
        assert links == ()
        return
    assert all(graph.has_edge(u, v) for u, v in links)
    nodes = nodes_of(links)
    assert nodes[0] == src and nodes[-1] == dst
    assert len(set(nodes)) == len(nodes)  # no node visited twice


# --- generators ----------------------------------------------------------------------------

def wrap_links(k: int) -> int:
    """Undirected links around one ring of k routers (2 routers share one link, 1 has none)."""
    return k if k > 2 else k - 1


@pytest.mark.parametrize("cols,rows", [(1, 1), (1, 5), (4, 3), (8, 8)])
def test_mesh_has_cols_times_rows_routers_and_2_2crr_c_r_links(cols, rows):
    g = mesh(cols, rows, BW, LAT)
    assert g.number_of_nodes() == cols * rows
    assert g.number_of_edges() == 2 * (2 * cols * rows - cols - rows)
    assert g.nodes[f"r{cols - 1}_{rows - 1}"] == {"kind": "router",
                                                  "pos": (cols - 1.0, rows - 1.0)}
    assert g.graph["shape"] == (cols, rows)


@pytest.mark.parametrize("cols,rows", [(3, 3), (4, 5), (8, 8), (2, 4), (1, 6)])
def test_torus_has_4_cols_rows_links_when_both_sides_exceed_2(cols, rows):
    g = torus(cols, rows, BW, LAT)
    assert g.number_of_nodes() == cols * rows
    assert g.number_of_edges() == 2 * (rows * wrap_links(cols) + cols * wrap_links(rows))
    if cols > 2 and rows > 2:
        assert g.number_of_edges() == 4 * cols * rows


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_ring_has_2n_links(n):
    g = ring(n, BW, LAT)
    assert sorted(g) == sorted(f"r{i}" for i in range(n))
    assert g.number_of_edges() == 2 * wrap_links(n)
    if n > 2:
        assert g.number_of_edges() == 2 * n


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_crossbar_links_every_pair_one_hop(n):
    g = crossbar(n, BW, LAT)
    assert g.number_of_nodes() == n and g.number_of_edges() == n * (n - 1)
    if n > 1:
        assert len(route(g, "r0", f"r{n - 1}", "shortest")) == 1


@pytest.mark.parametrize("fanout,depth", [(1, 0), (1, 3), (2, 3), (4, 2), (3, 1)])
def test_tree_has_sum_of_powers_routers_and_two_links_per_child(fanout, depth):
    g = tree(fanout, depth, BW, LAT)
    n = sum(fanout**k for k in range(depth + 1))
    assert g.number_of_nodes() == n
    assert g.number_of_edges() == 2 * (n - 1)
    assert nx.is_tree(g.to_undirected())
    if depth:
        assert set(g.successors("r0")) == {f"r{i}" for i in range(1, fanout + 1)}


@pytest.mark.parametrize("graph", [mesh(3, 2, BW, LAT), torus(3, 3, BW, LAT), ring(5, BW, LAT),
                                   crossbar(4, BW, LAT), tree(2, 2, BW, LAT),
                                   from_edges([("a", "b"), ("b", "c")], BW, LAT)],
                         ids=lambda g: g.graph["topology"])
def test_every_link_goes_both_ways_with_its_attributes(graph):
    for u, v, data in graph.edges(data=True):
        assert graph.has_edge(v, u)
        assert data == {"bandwidth_bytes_per_cycle": BW, "latency_cycles": LAT, "kind": "noc"}
        assert isinstance(data["latency_cycles"], int)
    assert all(d["kind"] == "router" for _, d in graph.nodes(data=True))


def test_from_edges_takes_pairs_or_dicts_with_their_own_bandwidth():
    g = from_edges([{"u": "a", "v": "b", "bandwidth_bytes_per_cycle": 8, "latency_cycles": 3},
                    {"u": "b", "v": "c"}], BW, LAT)
    assert g.edges["b", "a"]["bandwidth_bytes_per_cycle"] == 8.0
    assert g.edges["b", "a"]["latency_cycles"] == 3
    assert g.edges["c", "b"]["bandwidth_bytes_per_cycle"] == BW
    assert "pos" not in g.nodes["a"]


@pytest.mark.parametrize("edges,fragment", [
    ([], "empty"),
    ([("a", "a")], "'a' is linked to itself"),
    ([("a", "b"), ("b", "a")], "edges.1: 'b' - 'a' is listed twice"),
    ([("a", "b", "c")], "edges.0: expected a pair"),
    ([{"u": "a", "w": "b"}], "edges.0: expected keys u, v"),
])
def test_from_edges_rejects_bad_lists_naming_the_entry(edges, fragment):
    with pytest.raises(ConfigError) as err:
        from_edges(edges, BW, LAT)
    assert fragment in str(err.value)


def test_generators_reject_impossible_sizes_and_links():
    with pytest.raises(ConfigError, match="cols=0"):
        mesh(0, 4, BW, LAT)
    with pytest.raises(ConfigError, match="bandwidth"):
        ring(4, 0, LAT)
    with pytest.raises(ConfigError, match="latency"):
        torus(3, 3, BW, -1)
    with pytest.raises(ConfigError, match="depth"):
        tree(2, -1, BW, LAT)


# --- the YAML section ----------------------------------------------------------------------

def spec(**fields) -> NocSpec:
    data = {"link_bandwidth_bytes_per_cycle": BW, "hop_latency_cycles": LAT, **fields}
    return validate(NocSpec, data, "arch.yaml", prefix="noc")


@pytest.mark.parametrize("fields,expected", [
    ({"topology": "mesh", "shape": [4, 3]}, mesh(4, 3, BW, LAT)),
    ({"topology": "torus", "shape": [3, 3]}, torus(3, 3, BW, LAT)),
    ({"topology": "ring", "shape": [6]}, ring(6, BW, LAT)),
    ({"topology": "crossbar", "shape": [4]}, crossbar(4, BW, LAT)),
    ({"topology": "tree", "shape": [2, 3]}, tree(2, 3, BW, LAT)),
    ({"topology": "edges", "edges": [["a", "b"], ["b", "c"]]},
     from_edges([("a", "b"), ("b", "c")], BW, LAT)),
], ids=lambda x: x["topology"] if isinstance(x, dict) else "")
def test_build_noc_gives_the_generators_graph(fields, expected):
    g = build_noc(spec(**fields))
    assert nx.utils.graphs_equal(g, expected)


@pytest.mark.parametrize("edges, key, message", [
    ([["a", "a"]], "noc.edges.0", "router 'a' is linked to itself"),
    ([["a", "b"], ["b", "a"]], "noc.edges.1", "'b' - 'a' is listed twice"),
    ([["a", "b"], ["c", "d"]], "noc", "the NoC graph is not connected: c, d cannot reach the "
                                      "rest (2 pieces: {a, b}; {c, d})"),
])
def test_build_noc_names_the_key_under_noc(edges, key, message):
    """As the section's schema errors do (`noc.shape`), not a bare `edges[0]` or none."""
    with pytest.raises(ConfigError) as err:
        build_noc(spec(topology="edges", edges=edges))
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: {message}")


def test_routing_defaults_to_xy_on_grids_and_shortest_elsewhere():
    assert spec(topology="mesh", shape=[2, 2]).routing == "xy"
    assert spec(topology="torus", shape=[3, 3]).routing == "xy"
    assert spec(topology="ring", shape=[4]).routing == "shortest"
    assert spec(topology="mesh", shape=[2, 2], routing="shortest").routing == "shortest"


def test_xy_routing_on_a_ring_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        spec(topology="ring", shape=[8], routing="xy")
    assert str(err.value).startswith("arch.yaml: noc: ")
    assert "routing 'xy'" in str(err.value) and "ring" in str(err.value)
    with pytest.raises(ConfigError, match="routing 'xy'.*not a ring"):
        RouteTable(ring(8, BW, LAT), "xy")
    with pytest.raises(ConfigError, match="routing 'xy'.*not a graph of listed edges"):
        route(from_edges([("a", "b")], BW, LAT), "a", "b", "xy")


@pytest.mark.parametrize("fields,fragment", [
    ({"topology": "mesh"}, "needs shape: [cols, rows]"),
    ({"topology": "mesh", "shape": [4]}, "needs shape: [cols, rows]"),
    ({"topology": "ring", "shape": [0]}, "must be >= 1"),
    ({"topology": "tree", "shape": [0, 2]}, "fanout >= 1"),
    ({"topology": "edges"}, "needs a non-empty `edges`"),
    ({"topology": "mesh", "shape": [2, 2], "edges": [["a", "b"]]}, "only for topology 'edges'"),
    ({"topology": "mesh", "shape": [2, 2], "hops": 1}, "unknown key"),
    # a NoC too large to build is refused by its size, before a graph of 10^36 routers
    # hangs the command and runs it out of memory
    ({"topology": "mesh", "shape": [10**18, 4]},
     "noc.shape: mesh [cols, rows] = [1000000000000000000, 4] makes over 4096 routers"),
    ({"topology": "tree", "shape": [2, 10**18]}, "noc.shape: tree [fanout, depth]"),
    ({"topology": "tree", "shape": [1, 10**18]}, "makes over 4096 routers"),
    ({"topology": "crossbar", "shape": [1000]}, "makes 999000 directed links; expected at "
                                                "most 4096 routers and 65536 links"),
    # a finite width whose bytes a second are not: 10^300 bytes a cycle overflowed to
    # infinity and failed the run with a traceback
    ({"topology": "mesh", "shape": [2, 2], "link_bandwidth_bytes_per_cycle": 1e300},
     "noc.link_bandwidth_bytes_per_cycle: Input should be less than or equal to 1000000000"),
    ({"topology": "edges", "edges": [{"u": "a", "v": "b", "bandwidth_bytes_per_cycle": 1e300}]},
     "noc.edges.0.bandwidth_bytes_per_cycle: Input should be less than or equal to 1000000000"),
])
def test_bad_noc_sections_name_the_problem(fields, fragment):
    with pytest.raises(ConfigError) as err:
        spec(**fields)
    assert fragment in str(err.value)


@pytest.mark.parametrize("edge, key, fragment", [
    ({"u": "a", "v": "b", "bandwidth_bytes_per_cycle": 0}, "noc.edges.0.bandwidth_bytes_per_cycle",
     "Input should be greater than 0 (got 0)"),
    ({"u": "a", "v": "b", "latency_cycles": -1}, "noc.edges.0.latency_cycles",
     "Input should be greater than or equal to 0 (got -1)"),
    ({"u": "a", "v": "b", "bandwidth": 8}, "noc.edges.0.bandwidth",
     "unknown key; expected one of: bandwidth_bytes_per_cycle, latency_cycles, u, v"),
    ({"u": "a"}, "noc.edges.0.v", "Field required"),
    ("a-b", "noc.edges.0", "expected a [router, router] pair, or a mapping {u, v} with "
                           "optional bandwidth_bytes_per_cycle, latency_cycles (got 'a-b')"),
    (["a", "b", "c"], "noc.edges.0", "expected a [router, router] pair, got 3 names"),
])
def test_a_hand_written_link_as_a_mapping_is_validated(edge, key, fragment):
    with pytest.raises(ConfigError) as err:
        spec(topology="edges", edges=[edge, ["b", "c"]])
    assert err.value.key == key and fragment in str(err.value)


@pytest.mark.parametrize("nbytes", [8, 800, 4096])
def test_a_link_given_its_own_bandwidth_moves_b_bytes_in_latency_plus_b_over_it(nbytes):
    """Closed form: from the buffer's port at router a to the cluster at b, over the link
    a-b given 8 B/cycle in the YAML (the section's links: 64), ports of 64 B/cycle and no
    latency, hop latency 3: B bytes take 3 + B / 8 cycles (the slowest link of the route
    sets the hold, then the route's latency)."""
    noc_spec = validate(NocSpec, {"topology": "edges", "link_bandwidth_bytes_per_cycle": 64,
                                  "hop_latency_cycles": 3,
                                  "edges": [{"u": "a", "v": "b", "bandwidth_bytes_per_cycle": 8},
                                            ["b", "c"]]}, "arch.yaml", prefix="noc")
    graph = build_noc(noc_spec)
    assert graph.edges["a", "b"]["bandwidth_bytes_per_cycle"] == 8.0
    assert graph.edges["b", "c"]["bandwidth_bytes_per_cycle"] == 64.0
    attach(graph, "glb", "sram", "a", 64, 0)
    attach(graph, "cluster_b", "pe_cluster", "b", 64, 0)
    sim = Simulator()
    clock = Clock.from_mhz(1000.0)
    noc = Noc("noc", Module("top", sim), graph, noc_spec.routing, clock, src="glb",
              clusters=["cluster_b"])
    sim.env.process(noc.distribute(0, nbytes, 1))
    sim.env.run()
    assert sim.env.now == clock.cycles(3 + nbytes // 8)


def _row_of_two_clusters():
    """A 3 x 1 mesh of 8 B/cycle links, 1 cycle a hop, at 1 GHz; the buffer's port at r0_0,
    clusters at r1_0 and r2_0 (ports 64 B/cycle, no latency). The far cluster's route is two
    hops, 2 cycles, the near one's one hop."""
    graph = mesh(3, 1, 8, 1)
    attach(graph, "glb", "sram", "r0_0", 64, 0)
    for r in ("r1_0", "r2_0"):
        attach(graph, f"cluster_{r}", "pe_cluster", r, 64, 0)
    sim = Simulator()
    noc = Noc("noc", Module("top", sim), graph, "xy", Clock.from_mhz(1000.0), src="glb",
              clusters=["cluster_r1_0", "cluster_r2_0"])
    return sim, noc


def _bytes_by_link(noc) -> dict:
    return {edge: link.actions["bytes"] for edge, link in noc.links.items()
            if link.actions["bytes"]}


def test_a_multicast_crosses_each_link_of_its_tree_once():
    """800 B multicast to both clusters: every link of the XY tree carries the 800 B once
    (r0_0 -> r1_0 too, though both routes cross it): 100 cycles at 8 B/cycle, + the far
    route's 2 cycles = 102 ns; 5 links x 800 B = 4,000 byte-hops."""
    sim, noc = _row_of_two_clusters()
    sim.env.process(noc.distribute(800, 0, 2))
    sim.env.run()
    assert sim.env.now == 102_000
    assert _bytes_by_link(noc) == {
        ("glb", "r0_0"): 800, ("r0_0", "r1_0"): 800, ("r1_0", "cluster_r1_0"): 800,
        ("r1_0", "r2_0"): 800, ("r2_0", "cluster_r2_0"): 800}


@pytest.mark.parametrize("nbytes, end_ps", [
    (1600, 202_000),  # shares of 800: r0_0 -> r1_0 carries both, 1,600 B, 200 cycles, + 2
    (1601, 202_125),  # 801 to the first cluster, 800 to the second: 1,601 B at 8 B/ns, + 2
])
def test_a_split_operand_sends_each_cluster_its_share_along_its_route(nbytes, end_ps):
    """Each byte of a split operand goes to one cluster: the first B % n clusters get a byte
    more (shares rounded up had sent 1,602 B of 1,601)."""
    sim, noc = _row_of_two_clusters()
    sim.env.process(noc.distribute(0, nbytes, 2))
    sim.env.run()
    assert sim.env.now == end_ps
    first, second = nbytes - nbytes // 2, nbytes // 2
    assert _bytes_by_link(noc) == {
        ("glb", "r0_0"): nbytes, ("r0_0", "r1_0"): nbytes,
        ("r1_0", "cluster_r1_0"): first, ("r1_0", "r2_0"): second,
        ("r2_0", "cluster_r2_0"): second}


def test_an_odd_gather_carries_its_bytes_once():
    """43 B of results from the two clusters: 22 from the first, 21 from the second; the
    shared links carry the 43 B, not 44."""
    sim, noc = _row_of_two_clusters()
    sim.env.process(noc.gather(43, 2))
    sim.env.run()
    assert _bytes_by_link(noc) == {
        ("cluster_r2_0", "r2_0"): 21, ("r2_0", "r1_0"): 21, ("cluster_r1_0", "r1_0"): 22,
        ("r1_0", "r0_0"): 43, ("r0_0", "glb"): 43}


def test_a_gather_brings_each_clusters_share_back():
    """1,600 B of results, 800 from each cluster: r1_0 -> r0_0 carries both shares, 1,600 B
    in 200 cycles, + the far route's 2 cycles = 202 ns."""
    sim, noc = _row_of_two_clusters()
    sim.env.process(noc.gather(1600, 2))
    sim.env.run()
    assert sim.env.now == 202_000
    assert _bytes_by_link(noc) == {
        ("cluster_r2_0", "r2_0"): 800, ("r2_0", "r1_0"): 800, ("cluster_r1_0", "r1_0"): 800,
        ("r1_0", "r0_0"): 1600, ("r0_0", "glb"): 1600}


def test_a_tree_of_exactly_the_most_routers_is_allowed():
    # fanout 4095, depth 1: 1 + 4095 = 4096 routers, the limit; fanout 4096 is one too many
    assert spec(topology="tree", shape=[4095, 1]).shape == [4095, 1]
    with pytest.raises(ConfigError, match="over 4096 routers"):
        spec(topology="tree", shape=[4096, 1])


def test_endpoints_at_one_router_are_drawn_apart():
    g = mesh(2, 2, BW, LAT)
    attach(g, "glb", "sram", "r1_1", BW, LAT)
    attach(g, "cluster", "pe_cluster", "r1_1", BW, LAT)
    assert g.nodes["glb"]["pos"] == pytest.approx((1.3, 1.3))
    assert g.nodes["cluster"]["pos"] == pytest.approx((0.7, 1.3))


# --- endpoints and connectivity ------------------------------------------------------------

def test_attach_links_the_endpoint_both_ways_as_a_port():
    g = mesh(2, 2, BW, LAT)
    attach(g, "glb", "sram", "r1_0", 64, 2)
    assert g.nodes["glb"]["kind"] == "sram" and "pos" in g.nodes["glb"]
    for u, v in (("glb", "r1_0"), ("r1_0", "glb")):
        assert g.edges[u, v] == {"bandwidth_bytes_per_cycle": 64.0, "latency_cycles": 2,
                                 "kind": "port"}


def test_attach_to_a_missing_router_names_it():
    g = mesh(2, 2, BW, LAT)
    with pytest.raises(ConfigError, match="router 'r5_5' does not exist; routers: r0_0, r0_1"):
        attach(g, "glb", "sram", "r5_5", BW, LAT)
    attach(g, "glb", "sram", "r0_0", BW, LAT)
    with pytest.raises(ConfigError, match="'glb' is already a node"):
        attach(g, "glb", "sram", "r1_1", BW, LAT)
    with pytest.raises(ConfigError, match="router 'glb' is not a router"):
        attach(g, "x", "sram", "glb", BW, LAT)
    with pytest.raises(ConfigError, match="kind 'router' is not one of"):
        attach(g, "x", "router", "r1_1", BW, LAT)


def test_a_disconnected_graph_names_the_nodes_cut_off():
    g = with_clusters(mesh(3, 3, BW, LAT))
    check_connected(g, ["glb", "cluster_r2_2"])
    g.add_edge("island_a", "island_b")
    g.add_node("lonely", kind="router")
    with pytest.raises(ConfigError) as err:
        check_connected(g, ["glb"])
    message = str(err.value)
    assert "not connected: island_a, island_b, lonely cannot reach the rest" in message
    assert "3 pieces" in message and "{lonely}" in message


def test_a_missing_required_node_is_named():
    with pytest.raises(ConfigError, match="no node\\(s\\) 'dram'"):
        check_connected(mesh(2, 2, BW, LAT), ["r0_0", "dram"])


# --- routes --------------------------------------------------------------------------------

@FAST
@given(st.data(), st.integers(1, 8), st.integers(1, 8))
def test_xy_hops_equal_manhattan_distance_and_go_x_first(data, cols, rows):
    g = mesh(cols, rows, BW, LAT)
    x0, x1 = data.draw(st.integers(0, cols - 1)), data.draw(st.integers(0, cols - 1))
    y0, y1 = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, rows - 1))
    src, dst = f"r{x0}_{y0}", f"r{x1}_{y1}"
    links = route(g, src, dst, "xy")
    assert len(links) == abs(x1 - x0) + abs(y1 - y0)
    assert_route_is_a_walk(g, links, src, dst)
    moves = ["x" if g.nodes[u]["pos"][1] == g.nodes[v]["pos"][1] else "y" for u, v in links]
    assert moves == sorted(moves)  # every x step before every y step


def test_xy_goes_along_x_then_y_with_the_ports_at_both_ends():
    g = with_clusters(mesh(3, 3, BW, LAT))
    links = route(g, "glb", "cluster_r2_1", "xy")
    assert nodes_of(links) == ["glb", "r0_0", "r1_0", "r2_0", "r2_1", "cluster_r2_1"]
    assert [g.edges[e]["kind"] for e in links] == ["port", "noc", "noc", "noc", "port"]
    back = route(g, "cluster_r2_1", "glb", "xy")
    assert nodes_of(back) == ["cluster_r2_1", "r2_1", "r1_1", "r0_1", "r0_0", "glb"]


def test_xy_reaches_the_noc_through_a_chain_of_endpoints():
    """The accelerator's front end: glb -> selector -> router (the glb link is one-way)."""
    g = mesh(2, 2, BW, LAT)
    attach(g, "cluster_r1_1", "pe_cluster", "r1_1", BW, LAT)
    attach(g, "selector", "selector", "r0_0", BW, LAT)
    g.add_node("glb", kind="sram")
    g.add_edge("glb", "selector", bandwidth_bytes_per_cycle=BW, latency_cycles=0, kind="port")
    assert nodes_of(route(g, "glb", "cluster_r1_1", "xy")) == [
        "glb", "selector", "r0_0", "r1_0", "r1_1", "cluster_r1_1"]
    assert route(g, "glb", "selector", "xy") == (("glb", "selector"),)
    assert route(g, "glb", "glb", "xy") == ()


@FAST
@given(st.data(), st.integers(1, 7), st.integers(1, 7))
def test_torus_xy_takes_the_shorter_way_round_each_dimension(data, cols, rows):
    g = torus(cols, rows, BW, LAT)
    x0, x1 = data.draw(st.integers(0, cols - 1)), data.draw(st.integers(0, cols - 1))
    y0, y1 = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, rows - 1))
    links = route(g, f"r{x0}_{y0}", f"r{x1}_{y1}", "xy")
    dx, dy = (x1 - x0) % cols, (y1 - y0) % rows
    assert len(links) == min(dx, cols - dx) + min(dy, rows - dy)
    assert_route_is_a_walk(g, links, f"r{x0}_{y0}", f"r{x1}_{y1}")
    assert len(links) == nx.shortest_path_length(g, f"r{x0}_{y0}", f"r{x1}_{y1}")


def test_torus_wraps_and_breaks_ties_the_positive_way():
    g = torus(5, 4, BW, LAT)
    assert nodes_of(route(g, "r0_0", "r4_0", "xy")) == ["r0_0", "r4_0"]          # wraps
    assert nodes_of(route(g, "r0_0", "r3_3", "xy")) == ["r0_0", "r4_0", "r3_0", "r3_3"]
    assert nodes_of(route(g, "r0_0", "r0_2", "xy")) == ["r0_0", "r0_1", "r0_2"]  # 2 either way
    assert nodes_of(route(g, "r0_2", "r0_0", "xy")) == ["r0_2", "r0_3", "r0_0"]


@st.composite
def connected_edge_lists(draw):
    """A random connected graph as an edge list: a random tree plus a few chords."""
    n = draw(st.integers(2, 12))
    names = [f"n{i}" for i in range(n)]
    edges = {tuple(sorted((names[i], names[draw(st.integers(0, i - 1))])))
             for i in range(1, n)}
    for _ in range(draw(st.integers(0, n))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        if a != b:
            edges.add(tuple(sorted((a, b))))
    return sorted(edges)


@FAST
@given(connected_edge_lists(), st.data())
def test_shortest_routes_are_shortest_and_the_smallest_of_them(edges, data):
    g = from_edges(edges, BW, LAT)
    src, dst = data.draw(st.sampled_from(sorted(g))), data.draw(st.sampled_from(sorted(g)))
    links = route(g, src, dst, "shortest")
    assert len(links) == nx.shortest_path_length(g, src, dst)
    assert_route_is_a_walk(g, links, src, dst)
    if src != dst:
        assert nodes_of(links) == min(nx.all_shortest_paths(g, src, dst))
    # The tie-break does not depend on the order the links were listed in.
    shuffled = list(edges)
    random.Random(0).shuffle(shuffled)
    assert route(from_edges(shuffled, BW, LAT), src, dst, "shortest") == links


@pytest.mark.parametrize("graph", [ring(7, BW, LAT), tree(3, 2, BW, LAT),
                                   torus(4, 3, BW, LAT), with_clusters(mesh(3, 3, BW, LAT))],
                         ids=lambda g: g.graph["topology"])
def test_shortest_route_lengths_equal_networkx_path_lengths(graph):
    table = RouteTable(graph, "shortest")
    lengths = dict(nx.all_pairs_shortest_path_length(graph))
    for src in graph:
        for dst in graph:
            assert len(table.route(src, dst)) == lengths[src][dst]


def test_a_route_to_a_missing_node_names_it():
    g = with_clusters(mesh(2, 2, BW, LAT))
    for routing in ("xy", "shortest"):
        with pytest.raises(ConfigError, match="no node 'cluster_r9_9'"):
            route(g, "glb", "cluster_r9_9", routing)
        with pytest.raises(ConfigError, match="no node 'dram'"):
            route(g, "dram", "glb", routing)


def test_unreachable_destination_and_unknown_routing_are_errors():
    g = mesh(2, 1, BW, LAT)
    g.add_node("r9", kind="router")
    with pytest.raises(ConfigError, match="'r0_0' -> 'r9': no path"):
        route(g, "r0_0", "r9", "shortest")
    with pytest.raises(ConfigError, match="unknown routing 'west_first'"):
        RouteTable(g, "west_first")


def test_route_table_computes_each_route_once():
    table = RouteTable(with_clusters(mesh(4, 4, BW, LAT)), "xy")
    first = table.route("glb", "cluster_r3_3")
    assert table.route("glb", "cluster_r3_3") is first
    assert first == route(table.graph, "glb", "cluster_r3_3", "xy")


# --- multicast -----------------------------------------------------------------------------

@pytest.mark.parametrize("cols,rows", [(1, 1), (4, 4), (6, 3)])
def test_row_broadcast_sends_once_per_link_of_its_tree(cols, rows):
    g = with_clusters(mesh(cols, rows, BW, LAT))
    row = [f"cluster_r{x}_0" for x in range(cols)]
    tree_links = multicast_tree(g, "glb", row, "xy")
    # The glb's port, the cols - 1 links along row 0, one port into each cluster.
    assert len(tree_links) == 1 + (cols - 1) + cols == 2 * cols
    unicast = sum(len(route(g, "glb", c, "xy")) for c in row)
    assert unicast == sum(2 + x for x in range(cols))  # what cols separate sends would cost


@pytest.mark.parametrize("cols,rows", [(4, 4), (5, 2)])
def test_broadcast_to_every_cluster_is_an_xy_spanning_tree(cols, rows):
    g = with_clusters(mesh(cols, rows, BW, LAT))
    clusters = sorted(n for n, d in g.nodes(data=True) if d["kind"] == "pe_cluster")
    links = multicast_tree(g, "glb", clusters, "xy")
    # Port out, row 0, every column, a port into every cluster.
    assert len(links) == 1 + (cols - 1) + cols * (rows - 1) + cols * rows
    assert nx.is_arborescence(nx.DiGraph(list(links)))


# --- bisection -----------------------------------------------------------------------------

def crossing_links(graph: nx.DiGraph, axis: int, size: int) -> int:
    """Directed links from the lower half to the upper half of a straight cut."""
    def half(n):
        return graph.nodes[n]["pos"][axis] < size // 2
    return sum(1 for u, v in graph.edges if half(u) and not half(v))


@pytest.mark.parametrize("make,cols,rows,links", [
    (mesh, 4, 4, 4), (mesh, 8, 2, 2), (mesh, 1, 6, 1), (mesh, 3, 5, 3),
    (torus, 4, 4, 8), (torus, 6, 4, 8), (torus, 2, 8, 4), (torus, 2, 2, 2),
])
def test_bisection_bandwidth_in_closed_form(make, cols, rows, links):
    g = make(cols, rows, BW, LAT)
    assert bisection_bandwidth_bytes_per_cycle(g) == links * BW
    if cols % 2 == 0 and rows % 2 == 0:  # even sides: count the links crossing each cut
        counted = min(crossing_links(g, 0, cols), crossing_links(g, 1, rows))
        assert counted == links


def test_bisection_needs_a_mesh_or_torus_of_two_routers_or_more():
    with pytest.raises(ConfigError, match="mesh or torus only, not a ring"):
        bisection_bandwidth_bytes_per_cycle(ring(4, BW, LAT))
    with pytest.raises(ConfigError, match="single router"):
        bisection_bandwidth_bytes_per_cycle(mesh(1, 1, BW, LAT))
