"""Drawing the hardware graph: PNG, SVG and DOT files, utilization colouring, bad input."""

import re

import networkx as nx
import pytest
from matplotlib.collections import LineCollection

from arch.draw import MOST_ARROWS, _draw_figure, _layout, draw_topology, to_dot
from arch.noc import attach, crossbar, from_edges, mesh, ring
from desim.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def system():
    """A 3 x 2 mesh with a cluster at each router, the GLB, and DRAM on links of no fixed
    bandwidth both ways (as the accelerator builds it)."""
    g = mesh(3, 2, 32.0, 1)
    for r in sorted(g):
        attach(g, f"cluster_{r}", "pe_cluster", r, 32.0, 1)
    attach(g, "glb", "sram", "r0_0", 64.0, 1)
    g.add_node("dram", kind="dram", pos=(-1.0, -1.0))
    for u, v in (("dram", "glb"), ("glb", "dram")):
        g.add_edge(u, v, kind="port", latency_cycles=0, bandwidth_bytes_per_cycle=float("nan"))
    return g


@pytest.mark.parametrize("suffix,magic", [(".png", PNG_MAGIC), (".svg", b"<?xml")])
def test_png_and_svg_are_written_with_their_magic_bytes(tmp_path, suffix, magic):
    out = draw_topology(system(), tmp_path / "sub" / f"noc{suffix}")
    assert out == tmp_path / "sub" / f"noc{suffix}"
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(magic)
    if suffix == ".svg":
        assert b"<svg" in data
    # the same drawing again, the same bytes (an SVG had carried its date and random ids)
    assert draw_topology(system(), tmp_path / f"again{suffix}").read_bytes() == data


def test_dot_text_has_every_node_and_edge(tmp_path):
    g = system()
    text = draw_topology(g, tmp_path / "noc.dot").read_text()
    assert text.startswith('digraph "mesh" {') and text.rstrip().endswith("}")
    for node in g:
        assert re.search(rf'^  "{node}" \[label="{node}\\n', text, re.M), node
    for u, v in g.edges:
        assert f'  "{u}" -> "{v}" [' in text
    assert text.count(" -> ") == g.number_of_edges()
    assert '"r0_0" -> "r1_0" [label="32 B/cycle"]' in text
    assert '"dram" -> "glb" [label=""]' in text          # no fixed bandwidth, no label
    assert '"glb" -> "dram" [label=""]' in text
    assert 'fillcolor="#4c72b0", shape=box, pos="72,0!"' in text  # r1_0 is a router at (1, 0)


def test_dot_quotes_odd_names():
    """(A hand-written NoC's routers take letters, digits and _ only; a graph built in
    Python may name its nodes as it likes.)"""
    g = nx.relabel_nodes(from_edges([("a", "b")], 1.0, 0),
                         {"a": 'a "quoted" router', "b": "b\\c"})
    text = to_dot(g)
    assert '"a \\"quoted\\" router" -> "b\\\\c"' in text


def test_utilization_colours_links_and_nodes(tmp_path):
    g = system()
    utilization = {"nodes": {"r0_0": 0.9, "cluster_r2_1": 0.25, "dram": 1.0},
                   "links": {"r0_0->r1_0": 1.0, "r1_0->r0_0": 0.1, "glb->r0_0": 0.5}}
    for suffix in (".png", ".svg"):
        out = draw_topology(g, tmp_path / f"util{suffix}", utilization)
        assert out.stat().st_size > 1000
    text = draw_topology(g, tmp_path / "util.dot", utilization).read_text()
    assert '"r0_0" -> "r1_0" [label="32 B/cycle 100%"]' in text
    assert "r0_0\\nrouter\\n90%" in text
    # the grey of the links and nodes without a value is in the legend (it was not)
    from arch.draw import _check_utilization, _draw_figure

    legend = _draw_figure(g, *_check_utilization(g, utilization)).axes[0].get_legend()
    assert "no busy share" in [t.get_text() for t in legend.get_texts()]
    legend = _draw_figure(g, {}, {}).axes[0].get_legend()   # no utilization: no grey
    assert "no busy share" not in [t.get_text() for t in legend.get_texts()]


def test_a_graph_of_many_links_draws_a_line_a_connection():
    """A 40-port crossbar (1,560 links): 780 connections, each one straight line as wide as
    its wider direction and coloured as its busier one, and no arrow; fewer links, arrows.
    Placing a crossbar of 256 ports' 65,000 arrows took matplotlib minutes."""
    g = crossbar(40, 16.0, 1)
    g.edges["r0", "r1"]["bandwidth_bytes_per_cycle"] = 32.0  # one direction twice as wide
    assert g.number_of_edges() == 1560 > MOST_ARROWS
    fig = _draw_figure(g, {}, {("r1", "r0"): 1.0, ("r0", "r1"): 0.0, ("r2", "r3"): 0.5})
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and not ax.patches  # no FancyArrowPatch
    segments = lines[0].get_segments()
    assert len(segments) == 780
    first = [tuple(map(tuple, s)) for s in segments].index((g.nodes["r0"]["pos"],
                                                            g.nodes["r1"]["pos"]))
    widths, colours = lines[0].get_linewidths(), lines[0].get_colors()
    assert widths[first] == pytest.approx(3.5 / 3)  # 32 B/cycle, the widest
    assert widths[first + 1] == pytest.approx((0.8 + 2.7 * 16 / 32) / 3)
    viridis_top = (0.993248, 0.906157, 0.143936)  # r1 -> r0's 100%, not r0 -> r1's 0%
    assert tuple(colours[first][:3]) == pytest.approx(viridis_top, abs=1e-6)
    assert "1560 links, a line a connection" in ax.get_title()
    small = _draw_figure(crossbar(8, 16.0, 1), {}, {}).axes[0]
    assert len(small.patches) == 56 and "a line a connection" not in small.get_title()


def test_utilization_naming_what_is_not_there_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="r9_9, r0_0->r2_0"):
        draw_topology(system(), tmp_path / "x.png",
                      {"nodes": {"r9_9": 0.5}, "links": {"r0_0->r2_0": 0.5}})
    with pytest.raises(ConfigError, match="unknown key\\(s\\) link"):
        draw_topology(system(), tmp_path / "x.png", {"link": {}})


def test_graphs_without_positions_get_the_same_layout_every_time(tmp_path):
    g = from_edges([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")], 8.0, 1)
    first = _layout(g)
    assert set(first) == set(g)
    assert {n: tuple(p) for n, p in _layout(g).items()} == {n: tuple(p)
                                                            for n, p in first.items()}
    assert draw_topology(g, tmp_path / "edges.png").read_bytes().startswith(PNG_MAGIC)
    assert _layout(ring(4, 1.0, 0))["r0"] == (0.0, 1.0)  # positions kept when all have one


def test_unknown_suffix_names_it_and_the_expected_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown suffix '\.jpg'; expected one of "
                                          r"\.png, \.svg, \.dot"):
        draw_topology(system(), tmp_path / "noc.jpg")
    assert not (tmp_path / "noc.jpg").exists()


def test_the_accelerator_links_its_buffer_both_ways():
    """Tiles go from DRAM into the buffer and out through the selector; results come back
    through the selector and are written to DRAM: the graph drawn has both directions."""
    from pathlib import Path

    from arch.accelerator import build_graph
    from desim.experiment import load_arch

    arch = Path(__file__).resolve().parents[1] / "configs" / "arch" / "hppu_like.yaml"
    g = build_graph(load_arch(arch))
    for u, v in (("dram", "glb"), ("glb", "selector")):
        assert g.has_edge(u, v) and g.has_edge(v, u), (u, v)
        assert g.edges[u, v]["kind"] == g.edges[v, u]["kind"] == "port"


def test_a_drawing_that_fails_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    """The picture is drawn beside its name and renamed when whole: a drawing that fails
    half-way leaves the earlier picture as it was, and no temporary file."""
    import arch.draw

    out = draw_topology(system(), tmp_path / "noc.png")
    before = out.read_bytes()

    class HalfDrawn:
        def savefig(self, path, format, metadata=None):
            path.write_bytes(PNG_MAGIC)  # a start, then the failure
            raise OSError("disk full")

    monkeypatch.setattr(arch.draw, "_draw_figure", lambda *a: HalfDrawn())
    with pytest.raises(OSError, match="disk full"):
        draw_topology(system(), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noc.png"]
