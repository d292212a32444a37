"""Pictures of the hardware graph: a PNG or SVG drawn with matplotlib, or Graphviz DOT text.

Nodes are coloured by kind (router, DRAM, SRAM, selector, PE cluster; DAC, crossbar, ADC,
shift-and-add, systolic array, neuron unit for the ReRAM and SNN designs) with a legend and
labelled by name; a link's width grows with its bandwidth, and the two directions of a
connection are drawn as two slightly curved arrows. Beyond `MOST_ARROWS` links (a crossbar of
some 30 ports), each connection is one straight line instead, as wide as its wider
direction and coloured by its busier one: an arrow takes matplotlib ~2 ms to place, a
256-port crossbar's 65,000 took minutes, and would be a grey blur. Nodes sit at their
`pos` when every node has one, else where a seeded spring layout puts them (the same
picture every time).

Given `utilization` ({"nodes": {name: 0..1}, "links": {"u->v": 0..1}}), links and node fills
are coloured by it on one colour scale with a colourbar; node borders keep their kind colour,
and nodes or links without a value are grey.

The DOT text is written here (no pydot or pygraphviz): kind colours, bandwidth labels, and
`pos` pinned for `neato -n` when nodes have it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from desim.errors import ConfigError
from desim.results import atomic_path, writable_file

KIND_COLOURS = {
    "router": "#4c72b0",
    "dram": "#c44e52",
    "sram": "#55a868",
    "selector": "#8172b2",
    "prng": "#8c564b",          # Procrustes' weight generator
    "pe_cluster": "#dd8452",
    # the datapaths of configs/arch files with a `kind:` (arch/reram.py, arch/snn.py)
    "dac": "#64b5cd",
    "crossbar": "#ccb974",
    "adc": "#da8bc3",
    "shift_add": "#937860",
    "systolic_array": "#e377c2",
    "neuron_unit": "#17becf",
}
UNKNOWN_COLOUR = "#999999"
NO_VALUE_COLOUR = "#dddddd"
SUFFIXES = (".png", ".svg", ".dot")
MOST_ARROWS = 1000
UTILIZATION_CMAP = "viridis"


def draw_topology(graph: nx.DiGraph, out: Path, utilization: dict | None = None) -> Path:
    """Draw `graph` to `out` (.png, .svg or .dot, by suffix) and return `out`."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"cannot draw to {out.name!r}: unknown suffix {out.suffix!r}; "
                          f"expected one of {', '.join(SUFFIXES)}")
    writable_file(out)
    nodes_util, links_util = _check_utilization(graph, utilization)
    with atomic_path(out) as tmp:  # never a half-drawn picture under its name
        if suffix == ".dot":
            tmp.write_text(to_dot(graph, nodes_util, links_util))
        else:
            # the same drawing, the same bytes: an SVG had carried the date and random ids
            with matplotlib.rc_context({"svg.hashsalt": "desim"}):
                _draw_figure(graph, nodes_util, links_util).savefig(
                    tmp, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
    return out


def _check_utilization(graph: nx.DiGraph, utilization: dict | None,
                       ) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """The per-node and per-link values, with every name checked against the graph."""
    if utilization is None:
        return {}, {}
    unknown_keys = sorted(set(utilization) - {"nodes", "links"})
    if unknown_keys:
        raise ConfigError(f"utilization: unknown key(s) {', '.join(unknown_keys)}; "
                          f"expected nodes, links")
    nodes = {str(n): float(v) for n, v in utilization.get("nodes", {}).items()}
    links: dict[tuple[str, str], float] = {}
    bad = [n for n in nodes if n not in graph]
    for key, value in utilization.get("links", {}).items():
        u, sep, v = str(key).partition("->")
        if not sep or not graph.has_edge(u, v):
            bad.append(key)
        links[(u, v)] = float(value)
    if bad:
        raise ConfigError(f"utilization names what the graph does not have: {', '.join(bad)} "
                          f"(nodes by name, links as 'u->v')")
    return nodes, links


def _layout(graph: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    pos = nx.get_node_attributes(graph, "pos")
    if len(pos) == graph.number_of_nodes():
        return pos
    return nx.spring_layout(graph.to_undirected(as_view=True), seed=0)


def _kind_colour(graph: nx.DiGraph, node: Any) -> str:
    return KIND_COLOURS.get(graph.nodes[node].get("kind"), UNKNOWN_COLOUR)


def _widths(graph: nx.DiGraph, edges: list[tuple[Any, Any]]) -> list[float]:
    """Line widths 0.8..3.5 by bandwidth; a link without a finite bandwidth gets 1."""
    bws = [graph.edges[e].get("bandwidth_bytes_per_cycle", math.nan) for e in edges]
    top = max((b for b in bws if math.isfinite(b)), default=1.0) or 1.0
    return [0.8 + 2.7 * b / top if math.isfinite(b) else 1.0 for b in bws]


def _connections(graph: nx.DiGraph, pos: dict[Any, tuple[float, float]],
                 edges: list[tuple[Any, Any]], colours: list[Any],
                 links_util: dict[tuple[str, str], float]) -> LineCollection:
    """Each connection (one or both directions of a link) as one thin straight line, below
    the nodes: as wide as its wider direction (a third of an arrow's width, half opaque, so
    that thousands still show the nodes' ring), coloured as its busier one."""
    widths = dict(zip(edges, _widths(graph, edges), strict=True))
    colour = dict(zip(edges, colours, strict=True))
    lines: dict[tuple[Any, Any], list[tuple[Any, Any]]] = {}
    for u, v in edges:
        lines.setdefault((v, u) if (v, u) in lines else (u, v), []).append((u, v))
    busiest = [max(pair, key=lambda e: links_util.get(e, -1.0)) for pair in lines.values()]
    return LineCollection([(pos[u], pos[v]) for u, v in lines],
                          linewidths=[max(widths[e] for e in pair) / 3
                                      for pair in lines.values()],
                          colors=[colour[e] for e in busiest], alpha=0.5, zorder=0.5)


def _draw_figure(graph: nx.DiGraph, nodes_util: dict[str, float],
                 links_util: dict[tuple[str, str], float]) -> Figure:
    pos = _layout(graph)
    nodes, edges = list(graph.nodes), list(graph.edges)
    size = min(16.0, 4.0 + 0.5 * math.sqrt(len(nodes)))
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    ax.set_axis_off()
    font = 8 if len(nodes) <= 40 else 5
    node_size = 500 if len(nodes) <= 40 else 150
    kind_colours = [_kind_colour(graph, n) for n in nodes]

    utilized = bool(nodes_util or links_util)
    if utilized:
        scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=UTILIZATION_CMAP)
        fill = [scale.to_rgba(nodes_util[n]) if n in nodes_util else NO_VALUE_COLOUR
                for n in nodes]
        edge_colours = [scale.to_rgba(links_util[e]) if e in links_util else NO_VALUE_COLOUR
                        for e in edges]
        nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=nodes, node_color=fill,
                               edgecolors=kind_colours, linewidths=2.5, node_size=node_size)
        fig.colorbar(scale, ax=ax, label="utilization", shrink=0.7)
    else:
        edge_colours = ["#555555"] * len(edges)
        nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=nodes, node_color=kind_colours,
                               node_size=node_size)
    many = len(edges) > MOST_ARROWS
    if many:
        ax.add_collection(_connections(graph, pos, edges, edge_colours, links_util))
    elif edges:
        nx.draw_networkx_edges(graph, pos, ax=ax, edgelist=edges, width=_widths(graph, edges),
                               edge_color=edge_colours, arrows=True, arrowsize=8,
                               connectionstyle="arc3,rad=0.12", node_size=node_size)
    # Names can be wider than their node: black on a pale box reads on any fill.
    box = dict(facecolor="white", alpha=0.7, edgecolor="none", pad=0.5)
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=font, bbox=box)
    kinds = sorted({graph.nodes[n].get("kind", "?") for n in nodes})
    handles = [Line2D([], [], marker="o", linestyle="", markersize=9,
                      color=KIND_COLOURS.get(k, UNKNOWN_COLOUR), label=k) for k in kinds]
    if utilized and (len(links_util) < len(edges) or len(nodes_util) < len(nodes)):
        # (a port into the NoC, a node the run's statistics give no busy share)
        handles.append(Line2D([], [], color=NO_VALUE_COLOUR, linewidth=3,
                              label="no busy share"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
              ncol=max(1, min(len(handles), 5)))
    topology = graph.graph.get("topology")
    if topology:
        shape = list(graph.graph.get("shape", ()))
        title = f"{topology} {shape}" if shape else topology
        ax.set_title(title + (f": {len(edges)} links, a line a connection" if many else ""))
    fig.tight_layout()
    return fig


def _escape(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: Any) -> str:
    return f'"{_escape(text)}"'


def _number(x: float) -> str:
    return f"{x:g}"


def to_dot(graph: nx.DiGraph, nodes_util: dict[str, float] | None = None,
           links_util: dict[tuple[str, str], float] | None = None) -> str:
    """Graphviz DOT text for `graph`: nodes filled by kind, links labelled with their
    bandwidth (and utilization, when given)."""
    nodes_util, links_util = nodes_util or {}, links_util or {}
    lines = [f"digraph {_quote(graph.graph.get('topology', 'noc'))} {{",
             '  node [style=filled, fontcolor=white, fontsize=10];',
             "  edge [fontsize=8];"]
    for node, data in graph.nodes(data=True):
        kind = data.get("kind", "?")
        label = f"{_escape(node)}\\n{_escape(kind)}"  # \n: a DOT line break
        if node in nodes_util:
            label += f"\\n{nodes_util[node]:.0%}"
        attrs = [f'label="{label}"',
                 f"fillcolor={_quote(KIND_COLOURS.get(kind, UNKNOWN_COLOUR))}",
                 f"shape={'box' if kind == 'router' else 'ellipse'}"]
        if "pos" in data:
            x, y = data["pos"]
            attrs.append(f'pos="{_number(x * 72)},{_number(y * 72)}!"')
        lines.append(f"  {_quote(node)} [{', '.join(attrs)}];")
    for u, v, data in graph.edges(data=True):
        bw = data.get("bandwidth_bytes_per_cycle", math.nan)
        label = f"{_number(bw)} B/cycle" if math.isfinite(bw) else ""
        if (u, v) in links_util:
            label += f" {links_util[(u, v)]:.0%}"
        lines.append(f"  {_quote(u)} -> {_quote(v)} [label={_quote(label.strip())}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
