"""The network-on-chip as a graph: topologies, endpoints, routes and multicast trees.

What is modelled is structure only (no timing; the simulator turns each link into a
`desim.channels.Link`):

* The graph is an `nx.DiGraph` holding both directions of every physical connection, because
  each direction is a separate wire with its own bandwidth to contend for.
* Nodes have a `kind` ("router", "dram", "sram", "selector", "pe_cluster") and, where it
  means something, a `pos` (x, y) used for drawing and for XY routing. Routers are named
  "r{x}_{y}" on a mesh or torus and "r{i}" on a ring, crossbar or tree.
* Edges have `bandwidth_bytes_per_cycle` (float), `latency_cycles` (int) and a `kind`:
  "noc" between two routers, "port" between an endpoint and its router.
* `graph.graph` records how the graph was made: `topology`, `shape` and
  `link_bandwidth_bytes_per_cycle` (used by XY routing and the bisection bandwidth).

Topologies: `mesh`, `torus` (a mesh with wraparound links), `ring`, `crossbar`, `tree` and
`from_edges` (links listed by hand); `NocSpec` is the architecture YAML's `noc:` section and
`build_noc` turns it into a graph.

A crossbar of n ports is modelled as n routers "r0".."r{n-1}", every pair linked both ways: the
link ri -> rj is the crosspoint from input i to output j, one hop. Contention at an output
port is the port link rj -> endpoint that all traffic into that endpoint shares (and at an
input, endpoint -> ri). A central switch node would have to be a router too, and would then
get a PE cluster of its own, since the accelerator attaches one to every router.

Routing (`RouteTable`, `route`): "xy" (dimension order, mesh and torus only) goes along x
first, then along y; on a torus each dimension goes the shorter way round (ties: the positive
way). "shortest" is a fewest-hops path; among equally short paths it takes the
lexicographically smallest sequence of node names, so routes do not depend on the order in
which nodes or edges were added. A route is the tuple of links (u, v) in order, including the
port links at both ends. A multicast sends once on each link of the union of its routes
(`multicast_tree`); with XY routing from one source that union is a tree.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, Literal

import networkx as nx
from pydantic import BeforeValidator, Field, model_validator

from desim.channels import Link as LinkChannel
from desim.channels import LinkGroup
from desim.clock import Clock
from desim.configio import Strict
from desim.errors import ConfigError
from desim.module import Module

Link = tuple[str, str]
Route = tuple[Link, ...]
Routing = Literal["xy", "shortest"]

KINDS = ("router", "dram", "sram", "selector", "pe_cluster")
ENDPOINT_KINDS = KINDS[1:]
GRID_TOPOLOGIES = ("mesh", "torus")
# How many numbers each topology's `shape` has, and what they mean.
SHAPES = {"mesh": "[cols, rows]", "torus": "[cols, rows]", "ring": "[n]", "crossbar": "[n]",
          "tree": "[fanout, depth]"}
_SHAPE_LENGTH = {"mesh": 2, "torus": 2, "ring": 1, "crossbar": 1, "tree": 2}
# The largest NoC a design may have: a check of a 64 x 64 mesh takes seconds, a run minutes;
# a shape of 10^18 (a typo, a sweep's stray value) would hang building the graph, then fail
# for memory, with a traceback rather than a word about the shape.
MAX_ROUTERS = 4096
MAX_LINKS = 65536
# The widest link, bytes a cycle: 10^9 (a gigabyte a cycle). 10^300 overflowed its bytes a
# second to infinity, and the run failed with a traceback converting it to a time.
MAX_LINK_BYTES_PER_CYCLE = 1e9


def topology_words(topology: str | None) -> str:
    """A topology named in a sentence, after "a": a mesh, a ring, a graph of listed edges."""
    return {None: "graph of unknown topology", "edges": "graph of listed edges"}.get(
        topology, topology)


# -- the YAML section ----------------------------------------------------------------------

class NocEdge(Strict):
    """One link of topology "edges" written as a mapping, `{u: a, v: b}`, to give it a
    bandwidth or latency of its own (a wide link to the buffer's router, a slow long wire);
    unset, the section's `link_bandwidth_bytes_per_cycle` and `hop_latency_cycles`."""

    u: str = Field(min_length=1)
    v: str = Field(min_length=1)
    bandwidth_bytes_per_cycle: float | None = Field(None, gt=0, le=MAX_LINK_BYTES_PER_CYCLE)
    latency_cycles: int | None = Field(None, ge=0)


def _pair_or_mapping(value: Any) -> Any:
    """A link that is neither a pair nor a mapping is refused here, in words: pydantic would
    try each member of the union and say only "Input should be a valid list"."""
    if isinstance(value, list | tuple) and len(value) != 2:
        raise ValueError(f"expected a [router, router] pair, got {len(value)} names")
    if not isinstance(value, list | tuple | dict | NocEdge):
        raise ValueError("expected a [router, router] pair, or a mapping {u, v} with "
                         "optional bandwidth_bytes_per_cycle, latency_cycles")
    return value


# A link of topology "edges": a pair of router names, or a mapping with its own figures.
EdgeItem = Annotated[list[str] | NocEdge, BeforeValidator(_pair_or_mapping)]


class NocSpec(Strict):
    """The `noc:` section of an architecture file.

    `shape` is [cols, rows] for a mesh or torus, [n] for a ring or crossbar and
    [fanout, depth] for a tree (depth 0 is the root alone); `edges` lists the links of
    topology "edges", each a [router, router] pair or a `NocEdge` mapping with its own
    bandwidth or latency. `routing` defaults to "xy" on a mesh or torus and to "shortest" on
    any other topology, where "xy" is an error.
    """

    topology: Literal["mesh", "torus", "ring", "crossbar", "tree", "edges"]
    shape: list[int] | None = None
    edges: list[EdgeItem] | None = None
    link_bandwidth_bytes_per_cycle: float = Field(gt=0, le=MAX_LINK_BYTES_PER_CYCLE)
    hop_latency_cycles: int = Field(ge=0)
    routing: Routing = "xy"

    @model_validator(mode="before")
    @classmethod
    def _routing_defaults_to_the_topology(cls, data: Any) -> Any:
        if (isinstance(data, dict) and "routing" not in data
                and data.get("topology") not in GRID_TOPOLOGIES):
            data = {**data, "routing": "shortest"}
        return data

    @model_validator(mode="after")
    def _fits_the_topology(self) -> NocSpec:
        topo = self.topology
        if topo == "edges":
            if not self.edges:
                raise ValueError("topology 'edges' needs a non-empty `edges` list of "
                                 "[router, router] pairs or {u, v} mappings")
            if self.shape is not None:
                raise ValueError("topology 'edges' takes `edges`, not `shape`")
        else:
            if self.edges is not None:
                raise ValueError(f"`edges` is only for topology 'edges', not {topo!r}")
            if self.shape is None or len(self.shape) != _SHAPE_LENGTH[topo]:
                raise ValueError(f"topology {topo!r} needs shape: {SHAPES[topo]}, "
                                 f"got {self.shape}")
            if topo == "tree":
                if self.shape[0] < 1 or self.shape[1] < 0:
                    raise ValueError(f"tree shape [fanout, depth] needs fanout >= 1 and "
                                     f"depth >= 0, got {self.shape}")
            elif min(self.shape) < 1:
                raise ValueError(f"{topo} shape {SHAPES[topo]} must be >= 1, got {self.shape}")
            routers, links = _size(topo, self.shape)
            if routers > MAX_ROUTERS or links > MAX_LINKS:
                raise ValueError(
                    f"shape: {topo} {SHAPES[topo]} = {self.shape} makes "
                    + (f"over {MAX_ROUTERS} routers" if routers > MAX_ROUTERS
                       else f"{links} directed links")
                    + f"; expected at most {MAX_ROUTERS} routers and {MAX_LINKS} links")
        if self.routing == "xy" and topo not in GRID_TOPOLOGIES:
            raise ValueError(f"routing 'xy' (dimension order) needs a mesh or torus, not a "
                             f"{topology_words(topo)}; use routing: shortest")
        return self


def _size(topology: str, shape: list[int]) -> tuple[int, int]:
    """How many routers and directed links a generated topology of `shape` has (a router
    count above MAX_ROUTERS is given as MAX_ROUTERS + 1: counted without making a number of
    10^18 digits, as `fanout ** depth` would)."""
    if topology == "tree":
        fanout, depth = shape
        routers, width = 1, 1
        for _ in range(depth):
            width *= fanout
            routers += width
            if routers > MAX_ROUTERS:
                return MAX_ROUTERS + 1, 0
        return routers, 2 * (routers - 1)
    routers = math.prod(shape)
    if routers > MAX_ROUTERS:
        return MAX_ROUTERS + 1, 0
    if topology == "crossbar":
        return routers, routers * (routers - 1)
    if topology == "ring":
        return routers, 2 * routers
    return routers, 4 * routers  # a mesh or torus: at most four links a router


def build_noc(spec: NocSpec) -> nx.DiGraph:
    """The routers and links that `spec` describes (no endpoints yet: see `attach`). An
    error names its key under `noc`, as the section's schema errors do."""
    try:
        graph = _generate(spec)
        check_connected(graph, [])  # listed edges may leave routers apart
    except ConfigError as err:
        raise err.within("noc") from None
    return graph


def _generate(spec: NocSpec) -> nx.DiGraph:
    bw, lat = spec.link_bandwidth_bytes_per_cycle, spec.hop_latency_cycles
    shape = spec.shape or []
    match spec.topology:
        case "mesh":
            return mesh(shape[0], shape[1], bw, lat)
        case "torus":
            return torus(shape[0], shape[1], bw, lat)
        case "ring":
            return ring(shape[0], bw, lat)
        case "crossbar":
            return crossbar(shape[0], bw, lat)
        case "tree":
            return tree(shape[0], shape[1], bw, lat)
        case _:
            return from_edges([e.model_dump(exclude_none=True) if isinstance(e, NocEdge)
                               else tuple(e) for e in spec.edges or []], bw, lat)


# -- generators ----------------------------------------------------------------------------

def _new_graph(topology: str, shape: tuple[int, ...], bandwidth: float, latency: int,
               ) -> nx.DiGraph:
    if not bandwidth > 0 or math.isinf(bandwidth):
        raise ConfigError(f"{topology}: link bandwidth must be a finite number > 0 bytes/cycle, "
                          f"got {bandwidth}")
    if int(latency) != latency or latency < 0:
        raise ConfigError(f"{topology}: hop latency must be a whole number >= 0 of cycles, "
                          f"got {latency}")
    return nx.DiGraph(topology=topology, shape=shape,
                      link_bandwidth_bytes_per_cycle=float(bandwidth))


def _link(graph: nx.DiGraph, a: str, b: str, bandwidth: float, latency: int,
          kind: str = "noc") -> None:
    """Both directions of one connection (a no-op for a self-loop or an existing link)."""
    if a == b:
        return
    attrs = {"bandwidth_bytes_per_cycle": float(bandwidth), "latency_cycles": int(latency),
             "kind": kind}
    graph.add_edge(a, b, **attrs)
    graph.add_edge(b, a, **attrs)


def _check_positive(topology: str, **sizes: int) -> None:
    bad = {name: n for name, n in sizes.items() if not isinstance(n, int) or n < 1}
    if bad:
        raise ConfigError(f"{topology}: sizes must be whole numbers >= 1, got "
                          + ", ".join(f"{name}={n!r}" for name, n in bad.items()))


def _grid(topology: str, cols: int, rows: int, bandwidth: float, latency: int,
          wrap: bool) -> nx.DiGraph:
    _check_positive(topology, cols=cols, rows=rows)
    graph = _new_graph(topology, (cols, rows), bandwidth, latency)
    for y in range(rows):
        for x in range(cols):
            graph.add_node(f"r{x}_{y}", kind="router", pos=(float(x), float(y)))
    for y in range(rows):
        for x in range(cols):
            if x + 1 < cols or wrap:
                _link(graph, f"r{x}_{y}", f"r{(x + 1) % cols}_{y}", bandwidth, latency)
            if y + 1 < rows or wrap:
                _link(graph, f"r{x}_{y}", f"r{x}_{(y + 1) % rows}", bandwidth, latency)
    return graph


def mesh(cols: int, rows: int, bandwidth_bytes_per_cycle: float,
         latency_cycles: int) -> nx.DiGraph:
    """A cols x rows grid of routers "r{x}_{y}" at pos (x, y), neighbours linked.

    2 * (2 * cols * rows - cols - rows) directed links.
    """
    return _grid("mesh", cols, rows, bandwidth_bytes_per_cycle, latency_cycles, wrap=False)


def torus(cols: int, rows: int, bandwidth_bytes_per_cycle: float,
          latency_cycles: int) -> nx.DiGraph:
    """A mesh whose rows and columns close into rings: 4 * cols * rows directed links when
    cols, rows > 2 (a dimension of 2 has no separate wraparound link, one of 1 none at all)."""
    return _grid("torus", cols, rows, bandwidth_bytes_per_cycle, latency_cycles, wrap=True)


def _on_circle(i: int, n: int) -> tuple[float, float]:
    """Position i of n around a circle whose neighbours are about one unit apart."""
    radius = max(1.0, n / (2 * math.pi))
    angle = math.pi / 2 - 2 * math.pi * i / n
    x, y = round(radius * math.cos(angle), 9), round(radius * math.sin(angle), 9)
    return (x + 0.0, y + 0.0)  # + 0.0 turns -0.0 into 0.0


def ring(n: int, bandwidth_bytes_per_cycle: float, latency_cycles: int) -> nx.DiGraph:
    """Routers "r0".."r{n-1}" in a cycle: 2n directed links when n > 2."""
    _check_positive("ring", n=n)
    graph = _new_graph("ring", (n,), bandwidth_bytes_per_cycle, latency_cycles)
    for i in range(n):
        graph.add_node(f"r{i}", kind="router", pos=_on_circle(i, n))
    for i in range(n):
        _link(graph, f"r{i}", f"r{(i + 1) % n}", bandwidth_bytes_per_cycle, latency_cycles)
    return graph


def crossbar(n: int, bandwidth_bytes_per_cycle: float, latency_cycles: int) -> nx.DiGraph:
    """An n-port crossbar: routers "r0".."r{n-1}", every pair one hop apart, n (n - 1)
    directed links (see the module docstring for why there is no central switch node)."""
    _check_positive("crossbar", n=n)
    graph = _new_graph("crossbar", (n,), bandwidth_bytes_per_cycle, latency_cycles)
    for i in range(n):
        graph.add_node(f"r{i}", kind="router", pos=_on_circle(i, n))
    for i in range(n):
        for j in range(i + 1, n):
            _link(graph, f"r{i}", f"r{j}", bandwidth_bytes_per_cycle, latency_cycles)
    return graph


def tree(fanout: int, depth: int, bandwidth_bytes_per_cycle: float,
         latency_cycles: int) -> nx.DiGraph:
    """A complete tree of routers numbered breadth first from the root "r0": the children of
    "r{i}" are "r{fanout*i+1}".."r{fanout*i+fanout}". Depth 0 is the root alone; there are
    sum(fanout**k for k in 0..depth) routers and twice as many directed links, less two.
    Drawn root on top, leaves one unit apart."""
    _check_positive("tree", fanout=fanout)
    if not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"tree: depth must be a whole number >= 0, got {depth!r}")
    graph = _new_graph("tree", (fanout, depth), bandwidth_bytes_per_cycle, latency_cycles)
    leaves = fanout**depth
    first = 0  # number of the first router on this level
    for level in range(depth + 1):
        width = fanout**level
        span = leaves / width  # leaves under each router of this level
        for k in range(width):
            graph.add_node(f"r{first + k}", kind="router",
                           pos=((k + 0.5) * span - leaves / 2, float(-level)))
            if level:
                parent = (first + k - 1) // fanout
                _link(graph, f"r{parent}", f"r{first + k}", bandwidth_bytes_per_cycle,
                      latency_cycles)
        first += width
    return graph


# A router's name, as a hand-written NoC gives it: "c->d" broke the links' names ('u->v'),
# "r 0" and "r_0" the waveform's scopes (a space becomes _ there).
ROUTER_NAME = re.compile(r"[A-Za-z0-9_]+")


def from_edges(edges: Sequence[Sequence[str] | dict[str, Any]],
               bandwidth_bytes_per_cycle: float, latency_cycles: int) -> nx.DiGraph:
    """Routers linked as listed: each item is a pair ("a", "b") or a dict
    {"u": "a", "v": "b"} that may set its own `bandwidth_bytes_per_cycle` and
    `latency_cycles`. Each pair is one connection, both directions; list it once. The routers
    get no `pos` (they are drawn with a layout) and XY routing does not apply."""
    graph = _new_graph("edges", (), bandwidth_bytes_per_cycle, latency_cycles)
    if not edges:
        raise ConfigError("the list of links is empty", key="edges")
    allowed = {"u", "v", "bandwidth_bytes_per_cycle", "latency_cycles"}
    for i, item in enumerate(edges):
        bw, lat = bandwidth_bytes_per_cycle, latency_cycles
        if isinstance(item, dict):
            unknown = sorted(set(item) - allowed)
            if unknown or not {"u", "v"} <= set(item):
                raise ConfigError(f"expected keys u, v and optionally "
                                  f"bandwidth_bytes_per_cycle, latency_cycles; got {item}",
                                  key=f"edges.{i}")
            pair = (item["u"], item["v"])
            bw, lat = item.get("bandwidth_bytes_per_cycle", bw), item.get("latency_cycles", lat)
            if not bw > 0 or int(lat) != lat or lat < 0:
                raise ConfigError(f"{pair}: bandwidth must be > 0 and latency a whole "
                                  f"number >= 0, got {bw} and {lat}", key=f"edges.{i}")
        else:
            pair = tuple(item)
        if len(pair) != 2 or not all(isinstance(n, str) and n for n in pair):
            raise ConfigError(f"expected a pair of router names, got {item!r}",
                              key=f"edges.{i}")
        a, b = pair
        for name in pair:
            if not ROUTER_NAME.fullmatch(name):
                raise ConfigError(f"router name {name!r}: expected letters, digits and _ only "
                                  "(a name becomes part of module paths, '.' separated, of "
                                  "links' names, 'u->v', and of waveform scopes)",
                                  key=f"edges.{i}")
        if a == b:
            raise ConfigError(f"router {a!r} is linked to itself", key=f"edges.{i}")
        if graph.has_edge(a, b):
            raise ConfigError(f"{a!r} - {b!r} is listed twice (each pair is linked both "
                              f"ways; list it once)", key=f"edges.{i}")
        for name in pair:
            graph.add_node(name, kind="router")
        _link(graph, a, b, bw, lat)
    return graph


# -- endpoints and checks ------------------------------------------------------------------

_ENDPOINT_OFFSETS = ((0.3, 0.3), (-0.3, 0.3), (0.3, -0.3), (-0.3, -0.3))


def attach(graph: nx.DiGraph, endpoint: str, kind: str, router: str,
           bandwidth_bytes_per_cycle: float, latency_cycles: int) -> None:
    """Add `endpoint` (a DRAM, buffer, selector or PE cluster) with a port link both ways to
    `router`. It is drawn beside the router (the offset turns with each endpoint added)."""
    if kind not in ENDPOINT_KINDS:
        raise ConfigError(f"endpoint {endpoint!r}: kind {kind!r} is not one of "
                          f"{', '.join(ENDPOINT_KINDS)}")
    if endpoint in graph:
        raise ConfigError(f"endpoint {endpoint!r} is already a node of the NoC graph")
    if graph.nodes.get(router, {}).get("kind") != "router":
        what = "is not a router" if router in graph else "does not exist"
        routers = sorted(n for n, d in graph.nodes(data=True) if d.get("kind") == "router")
        shown = ", ".join(routers[:12]) + (", ..." if len(routers) > 12 else "")
        raise ConfigError(f"cannot attach {endpoint!r}: router {router!r} {what}; "
                          f"routers: {shown or '(none)'}")
    if not bandwidth_bytes_per_cycle > 0 or int(latency_cycles) != latency_cycles \
            or latency_cycles < 0:
        raise ConfigError(f"port {endpoint!r} - {router!r}: bandwidth must be > 0 and latency "
                          f"a whole number >= 0, got {bandwidth_bytes_per_cycle} and "
                          f"{latency_cycles}")
    attrs: dict[str, Any] = {"kind": kind}
    if "pos" in graph.nodes[router]:
        x, y = graph.nodes[router]["pos"]
        taken = sum(1 for n in graph.successors(router) if graph.nodes[n].get("kind") != "router")
        dx, dy = _ENDPOINT_OFFSETS[taken % len(_ENDPOINT_OFFSETS)]
        attrs["pos"] = (x + dx, y + dy)
    graph.add_node(endpoint, **attrs)
    _link(graph, endpoint, router, bandwidth_bytes_per_cycle, latency_cycles, kind="port")


def link_role(graph: nx.DiGraph, edge: Link) -> Literal["hop", "port_in", "port_out"]:
    """What a byte crossing `edge` passes through, for the energy table: `hop`, a link
    between two routers and the router it enters; `port_in`, an endpoint's port into its
    router (that router alone); `port_out`, a router's port into an endpoint (nothing more:
    the byte's last router is paid by the link that entered it)."""
    if graph.nodes[edge[1]].get("kind") != "router":
        return "port_out"
    return "port_in" if graph.nodes[edge[0]].get("kind") != "router" else "hop"


def _names(nodes: Iterable[str], limit: int = 8) -> str:
    nodes = sorted(nodes)
    return ", ".join(nodes[:limit]) + (f", ... ({len(nodes)} nodes)" if len(nodes) > limit else "")


def check_connected(graph: nx.DiGraph, required: Sequence[str]) -> None:
    """Raise a ConfigError if a `required` node is missing or the graph falls apart into
    pieces (ignoring link direction); the message names the nodes cut off from the largest
    piece, and every piece."""
    missing = [n for n in required if n not in graph]
    if missing:
        raise ConfigError(f"the NoC graph has no node(s) {', '.join(map(repr, missing))}")
    if graph.number_of_nodes() == 0:
        raise ConfigError("the NoC graph is empty")
    parts = sorted(nx.weakly_connected_components(graph), key=lambda c: (-len(c), min(c)))
    if len(parts) > 1:
        cut_off = set().union(*parts[1:])
        pieces = "; ".join(f"{{{_names(p)}}}" for p in parts)
        raise ConfigError(f"the NoC graph is not connected: {_names(cut_off, 20)} cannot reach "
                          f"the rest ({len(parts)} pieces: {pieces})")


# -- routing -------------------------------------------------------------------------------

class RouteTable:
    """Routes over one graph with one routing rule, each computed once and then cached.

    The graph must not change after the table is made (build it after `attach`).
    """

    def __init__(self, graph: nx.DiGraph, routing: str) -> None:
        if routing not in ("xy", "shortest"):
            raise ConfigError(f"unknown routing {routing!r}; expected xy or shortest")
        self.graph = graph
        self.routing = routing
        self._routes: dict[Link, Route] = {}
        self._hops_to: dict[str, dict[str, int]] = {}  # for "shortest", per destination
        if routing == "xy":
            topology = graph.graph.get("topology")
            if topology not in GRID_TOPOLOGIES:
                raise ConfigError(f"routing 'xy' (dimension order) needs a mesh or torus, "
                                  f"not a {topology_words(topology)}; "
                                  f"use routing 'shortest'")
            self.cols, self.rows = graph.graph["shape"]
            self.wrap = topology == "torus"
            self._at: dict[tuple[int, int], str] = {}  # (x, y) -> router name
            for name, data in graph.nodes(data=True):
                if data.get("kind") == "router":
                    x, y = data["pos"]
                    self._at[(round(x), round(y))] = name

    def route(self, src: str, dst: str) -> Route:
        """The links from `src` to `dst`, in order (empty when they are the same node)."""
        key = (src, dst)
        if key not in self._routes:
            for name in key:
                if name not in self.graph:
                    raise ConfigError(f"route {src!r} -> {dst!r}: no node {name!r} in the NoC "
                                      f"graph")
            if src == dst:
                nodes = [src]
            elif self.routing == "xy":
                nodes = self._xy(src, dst)
            else:
                nodes = self._shortest(src, dst)
            self._routes[key] = tuple(pairwise(nodes))
        return self._routes[key]

    def multicast_tree(self, src: str, dsts: Iterable[str]) -> frozenset[Link]:
        """Every link a multicast from `src` to `dsts` uses, each once."""
        return frozenset(link for dst in dsts for link in self.route(src, dst))

    # "shortest": fewest hops, then the lexicographically smallest sequence of node names.
    def _shortest(self, src: str, dst: str) -> list[str]:
        if dst not in self._hops_to:
            self._hops_to[dst] = nx.single_source_shortest_path_length(
                self.graph.reverse(copy=False), dst)
        hops = self._hops_to[dst]
        if src not in hops:
            raise ConfigError(f"route {src!r} -> {dst!r}: no path in the NoC graph")
        path = [src]
        while path[-1] != dst:
            left = hops[path[-1]] - 1
            path.append(min(v for v in self.graph.successors(path[-1]) if hops.get(v) == left))
        return path

    # "xy": the port links out to a router, x then y over routers, the port links back in.
    def _xy(self, src: str, dst: str) -> list[str]:
        head = self._to_router(src, forward=True, stop_at=dst)
        if head[-1] == dst:
            return head
        tail = self._to_router(dst, forward=False)[::-1]
        (x, y), (tx, ty) = self._xy_of(head[-1]), self._xy_of(tail[0])
        path = head
        for axis, size, target in ((0, self.cols, tx), (1, self.rows, ty)):
            here = x if axis == 0 else y
            step = self._step(here, target, size)
            while here != target:
                here = (here + step) % size if self.wrap else here + step
                x, y = (here, y) if axis == 0 else (x, here)
                nxt = self._at.get((x, y))
                if nxt is None or not self.graph.has_edge(path[-1], nxt):
                    raise ConfigError(f"xy route {src!r} -> {dst!r}: no link from "
                                      f"{path[-1]!r} to the router at ({x}, {y})")
                path.append(nxt)
        return path + tail[1:]

    def _step(self, here: int, target: int, size: int) -> int:
        if not self.wrap:
            return 1 if target > here else -1
        ahead = (target - here) % size
        return 1 if ahead <= size - ahead else -1

    def _xy_of(self, router: str) -> tuple[int, int]:
        x, y = self.graph.nodes[router]["pos"]
        return round(x), round(y)

    def _to_router(self, node: str, forward: bool, stop_at: str | None = None) -> list[str]:
        """The path from `node` to the nearest router (or to `stop_at`, if that comes first)
        through non-router nodes only, ties to the smaller name; `forward=False` follows links
        backwards."""
        if self.graph.nodes[node].get("kind") == "router":
            return [node]
        nbrs = self.graph.successors if forward else self.graph.predecessors
        came_from: dict[str, str | None] = {node: None}
        queue = deque([node])
        while queue:
            here = queue.popleft()
            for v in sorted(nbrs(here)):
                if v in came_from:
                    continue
                came_from[v] = here
                if v == stop_at or self.graph.nodes[v].get("kind") == "router":
                    path = [v]
                    while came_from[path[-1]] is not None:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                queue.append(v)
        way = "from" if forward else "to"
        raise ConfigError(f"xy route: no router reachable {way} {node!r}")


def route(graph: nx.DiGraph, src: str, dst: str, routing: str) -> Route:
    """The links (u, v) from `src` to `dst` in order (uncached: use a `RouteTable` to route
    many times over the same graph)."""
    return RouteTable(graph, routing).route(src, dst)


def multicast_tree(graph: nx.DiGraph, src: str, dsts: Iterable[str],
                   routing: str) -> set[Link]:
    """The links of a multicast from `src` to `dsts`: the union of its routes, each link
    once (a multicast is sent once on each of them)."""
    return set(RouteTable(graph, routing).multicast_tree(src, dsts))


def bisection_bandwidth_bytes_per_cycle(graph: nx.DiGraph) -> float:
    """Bytes per cycle that can cross the narrowest cut of a mesh or torus into two halves,
    in ONE direction (the other direction has as much again).

    From the generator's shape (cols, rows) and link bandwidth b: cutting across x crosses
    one link per row, rows * b; on a torus also the wraparound links, 2 * rows * b (when
    cols > 2; with cols = 2 the wraparound is the same link). Likewise across y. The result
    is the smaller of the two cuts (a dimension of 1 cannot be cut). With an odd dimension
    the halves differ by one column or row; the formula is the usual one all the same.
    """
    topology = graph.graph.get("topology")
    if topology not in GRID_TOPOLOGIES:
        raise ConfigError(f"bisection bandwidth is in closed form for a mesh or torus only, "
                          f"not a {topology_words(topology)}")
    cols, rows = graph.graph["shape"]
    bandwidth = graph.graph["link_bandwidth_bytes_per_cycle"]
    cuts = []
    for size, across in ((cols, rows), (rows, cols)):
        if size >= 2:
            cuts.append(across * (2 if topology == "torus" and size > 2 else 1))
    if not cuts:
        raise ConfigError("a single router has no bisection")
    return min(cuts) * bandwidth


def is_noc_link(graph: nx.DiGraph, u: str, v: str) -> bool:
    """Whether the NoC makes a `Link` of edge u -> v: one with a router at an end (between
    routers, or an endpoint's port to its router); DRAM's port and the global buffer's link
    to its selector are no NoC links."""
    return "router" in (graph.nodes[u]["kind"], graph.nodes[v]["kind"])


def link_name(u: str, v: str) -> str:
    """A NoC link's module name below the NoC (`<run>.noc.<u>-><v>` in stats.json)."""
    return f"{u}->{v}"


class Noc(Module):
    """The network as simulated: one `Link` per directed edge between the GLB port and the
    clusters, and transfers that hold every link of their route (or tree) at once.

    A tile's distribution is one transaction: the stream operand is multicast (once per link
    of the tree to the active clusters), the channel operand is split among them (each
    cluster's share along its own route), and both go together, each link carrying the sum of
    what crosses it. It lasts as long as the most loaded link needs, plus the longest route's
    latency. The results come back the same way in reverse (a gather). Actions per link:
    `bytes` (the bytes crossing a link, priced by what they pass, `link_role`: a hop
    between routers, the first router from a port, nothing into an endpoint), `transfers`.
    """

    def __init__(self, name: str, parent: Module, graph: nx.DiGraph, routing: str, clock: Clock,
                 *, src: str, clusters: list[str]) -> None:
        super().__init__(name, parent)
        self.graph, self.clock, self.src, self.clusters = graph, clock, src, clusters
        self.table = RouteTable(graph, routing)
        self.links: dict[Link, LinkChannel] = {}
        self._plans: dict[tuple[str, int], _Plan] = {}

    def _link(self, edge: Link) -> LinkChannel:
        if edge not in self.links:
            data = self.graph.edges[edge]
            self.links[edge] = LinkChannel(
                link_name(*edge), self,
                bytes_per_s=data["bandwidth_bytes_per_cycle"] * self.clock.frequency_hz,
                latency_ps=self.clock.cycles(data["latency_cycles"]))
        return self.links[edge]

    def _plan(self, kind: str, active: int) -> _Plan:
        """The links to or from the first `active` clusters (in the order transfers take
        them) and what each carries."""
        key = (kind, active)
        if key not in self._plans:
            dsts = self.clusters[:active]
            if kind == "out":
                routes = [self.table.route(self.src, d) for d in dsts]
                tree = set(self.table.multicast_tree(self.src, dsts))
            else:
                routes = [self.table.route(d, self.src) for d in dsts]
                tree = set()
            crossing: dict[Link, list[int]] = {}  # the clusters whose routes cross a link
            for j, route in enumerate(routes):
                for edge in route:
                    crossing.setdefault(edge, []).append(j)
            # (links are made, the module tree's order, as routes and then the tree use them)
            latency = max(sum(self._link(e).latency_ps for e in r) for r in routes)
            loads = {self._link(e): (int(e in tree), _counts_below(crossing.get(e, []), active))
                     for e in sorted(set(crossing) | tree)}
            group = LinkGroup(list(loads))
            self._plans[key] = _Plan(group, [loads[link] for link in group.links], latency)
        return self._plans[key]

    def distribute(self, multicast_bytes: int, unicast_bytes: int, active: int) -> Generator:
        """Send one tile's operands from the GLB port to the first `active` clusters."""
        if active <= 0 or multicast_bytes + unicast_bytes <= 0:
            return
        plan = self._plan("out", active)
        share, rest = divmod(unicast_bytes, active)  # the first `rest` clusters: a byte more
        yield from plan.links.hold([m * multicast_bytes + below[-1] * share + below[rest]
                                    for m, below in plan.loads])
        yield self.env.timeout(plan.latency_ps)

    def gather(self, nbytes: int, active: int) -> Generator:
        """Bring one tile's results from the first `active` clusters back to the GLB port."""
        if active <= 0 or nbytes <= 0:
            return
        plan = self._plan("in", active)
        share, rest = divmod(nbytes, active)
        yield from plan.links.hold([below[-1] * share + below[rest] for _, below in plan.loads])
        yield self.env.timeout(plan.latency_ps)


def _counts_below(clusters: list[int], active: int) -> tuple[int, ...]:
    """For r in 0..active, how many of `clusters` (indices, ascending) come before the r-th:
    the link crossed by their routes carries that many of a split's r odd bytes (a split of
    B bytes over the active clusters gives the first B % active of them a byte more); the
    last, for r = active, is how many shares of the split it carries."""
    return tuple(sum(1 for j in clusters if j < r) for r in range(active + 1))


@dataclass
class _Plan:
    links: LinkGroup
    # per link of the group: (1 if it is on the multicast tree else 0, `_counts_below` of
    # the clusters whose routes cross it); it carries the multicast bytes times the first,
    # and of a split the share times the last of the second and its odd bytes by the rest
    loads: list[tuple[int, tuple[int, ...]]]
    latency_ps: int
