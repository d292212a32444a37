"""The accelerator: components built from the architecture YAML, wired as a networkx graph,
and the tile pipeline that replays the mapper's event table.

Structure (the graph): DRAM feeds the global buffer (GLB); the GLB (through the selector, when
there is one) attaches to one router of the NoC; a PE cluster attaches to every router.

Behaviour (five processes, one per pipeline stage, joined by two-deep FIFOs, the double
buffers of real hardware):

    fetch -> distribute -> compute -> collect -> writeback
    DRAM->GLB  GLB->selector->NoC->clusters  PEs  clusters->NoC->GLB  GLB->DRAM

With a ReLU speculator (Trainer) a sixth stage, `speculate`, sits between distribute and
compute: it predicts a tile's ReLU-zeroed outputs while the PEs compute the tile before.

Each stage takes one tile at a time, one timed transaction per transfer or computation. Layers
run one after the other: the next layer's first fetch waits until the previous layer's last
result is in DRAM (its outputs are the next layer's inputs). Within a stage the transfers that
stream into each other (DRAM into the GLB, the GLB onto the NoC) overlap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import networkx as nx
import numpy as np

from arch.config import ArchConfig
from arch.dram import DramController
from arch.energy import ELEMENT_BYTES, DesignPrices
from arch.noc import Noc, attach, build_noc, check_connected, link_role
from arch.pe import PeArray
from arch.selector import Selector
from arch.speculator import Speculator
from arch.sram import GlobalBuffer
from arch.vector import VectorUnit
from arch.weight_generator import WeightGenerator
from desim.channels import Fifo, Pool
from desim.clock import PS_PER_NS, Clock
from desim.errors import ConfigError
from desim.events import TILE_DTYPE, holds_local_half, holds_result
from desim.module import Module, Port, Simulator

COLUMNS = {name: i for i, name in enumerate(TILE_DTYPE.names)}


@dataclass
class PhaseRecord:
    """What one layer-phase took: its span (first fetch to last write-back; phases may
    overlap), its share of the run's time, from the previous phase's end to its own
    (`since_ps` to `end_ps`), and the actions its tiles counted (`Simulator.booked`) plus
    those counted in that share outside any phase's tiles."""

    layer: int
    phase: int
    start_ps: int
    end_ps: int
    since_ps: int = 0
    actions: dict[str, Counter] = field(default_factory=dict)


def build_graph(cfg: ArchConfig) -> nx.DiGraph:
    """The system graph: the NoC's routers, a cluster at each, the GLB and DRAM attached."""
    graph = build_noc(cfg.noc)
    routers = sorted(n for n, d in graph.nodes(data=True) if d["kind"] == "router")
    if cfg.global_buffer_router not in graph:
        raise ConfigError(f"{cfg.global_buffer_router!r} is not a router "
                          f"of the NoC; routers: {', '.join(routers)}", key="global_buffer_router")
    own = {"dram", "glb", "selector", "weight_generator", *(f"cluster_{r}" for r in routers)}
    if clash := sorted(own & set(routers)):  # the node would be taken for the router, or fail
        raise ConfigError(f"{', '.join(map(repr, clash))}: routers named as the processor's "
                          f"own nodes (dram, glb, selector, weight_generator, "
                          f"cluster_<router>); rename them", key="noc.edges")
    bw, lat = cfg.noc.link_bandwidth_bytes_per_cycle, cfg.noc.hop_latency_cycles
    for router in routers:
        attach(graph, f"cluster_{router}", "pe_cluster", router, bw, lat)
    port = "selector" if cfg.selector else "glb"
    attach(graph, port, "selector" if cfg.selector else "sram", cfg.global_buffer_router, bw, lat)
    if cfg.selector:
        graph.add_node("glb", kind="sram", pos=_beside(graph, "selector"))
        for u, v in (("glb", "selector"), ("selector", "glb")):  # tiles out, results back
            graph.add_edge(u, v, bandwidth_bytes_per_cycle=bw, latency_cycles=0, kind="port")
    if cfg.weight_generator:
        x, y = _beside(graph, "glb")
        graph.add_node("weight_generator", kind="prng", pos=(x + 1.2, y))
        graph.add_edge("weight_generator", "glb", kind="port", latency_cycles=0,
                       bandwidth_bytes_per_cycle=cfg.weight_generator.values_per_cycle
                       * ELEMENT_BYTES[cfg.pe_cluster.precision])
    graph.add_node("dram", kind="dram", pos=_beside(graph, "glb"))
    for u, v in (("dram", "glb"), ("glb", "dram")):  # fetches and write-backs
        graph.add_edge(u, v, kind="port", latency_cycles=0,
                       bandwidth_bytes_per_cycle=float("nan"))  # timed by the DRAM model
    check_connected(graph, ["dram", "glb", *[f"cluster_{r}" for r in routers]])
    return graph


def _beside(graph: nx.DiGraph, node: str) -> tuple[float, float]:
    x, y = graph.nodes[node].get("pos", (0.0, 0.0))
    return (x - 0.6, y - 0.6)


class Accelerator(Module):
    """The whole processor as a module tree, ready to replay event tables."""

    def __init__(self, sim: Simulator, cfg: ArchConfig, name: str = "top") -> None:
        super().__init__(name, sim)
        self.cfg = cfg
        self.clock = Clock.from_mhz(cfg.core_clock_mhz, f"{self.path}.clock (core_clock_mhz)")
        self.graph = build_graph(cfg)
        self.clusters = sorted(n for n, d in self.graph.nodes(data=True)
                               if d["kind"] == "pe_cluster")
        self.port = "selector" if cfg.selector else "glb"
        self.dram = DramController("dram", self, cfg.dram)
        self.glb = GlobalBuffer("glb", self, cfg.global_buffer, self.clock)
        self.selector = (Selector("selector", self, cfg.selector, self.clock)
                         if cfg.selector else None)
        self.weight_generator = (
            WeightGenerator("weight_generator", self, cfg.weight_generator, self.clock)
            if cfg.weight_generator else None)
        self.noc = Noc("noc", self, self.graph, cfg.noc.routing, self.clock,
                       src=self.port, clusters=self._clusters_by_distance())
        self.pes = PeArray("pe_array", self, cfg.pe_cluster, len(self.clusters), self.clock,
                           cfg.index_matching)
        self.vector = (VectorUnit("vector_unit", self, cfg.vector_unit, self.clock)
                       if cfg.vector_unit else None)
        self.speculator = (Speculator("speculator", self, cfg.speculator,
                                      cfg.pe_cluster.precision, self.clock)
                           if cfg.speculator else None)
        # the speculator (FF only) pairs non-zeros when the PEs do, on FF's two operands
        self._speculator_matches = (cfg.index_matching is not None
                                    and cfg.sparsity.skip_zero_weights
                                    and "FF" in cfg.sparsity.activation_phases)
        # The pipeline's stages talk through ports bound to two-deep FIFOs.
        stages = ("fetch", "distribute", *(("speculate",) if self.speculator else ()),
                  "compute", "collect", "writeback")
        self.queues = [Fifo(f"{a}_to_{b}", self, capacity=2) for a, b in pairwise(stages)]
        self.stage_ports = {}
        for (a, b), fifo in zip(pairwise(stages), self.queues, strict=True):
            self.stage_ports[f"{a}_out"] = self.add_port(f"{a}_out", "out")
            self.stage_ports[f"{b}_in"] = self.add_port(f"{b}_in", "in")
            self.stage_ports[f"{a}_out"].bind(fifo)
            self.stage_ports[f"{b}_in"].bind(fifo)
        # The global buffer is double-buffered: the tiler sizes a tile's operands and results
        # to half of it, so two tiles' operands and two tiles' results fit at once. A tile
        # holds an operand half from its fetch until its operands are in the clusters, and a
        # result half (if it has results) from its collection until they are in DRAM.
        self.operand_halves = Pool("operand_halves", self, capacity=2)
        self.result_halves = Pool("result_halves", self, capacity=2)
        # The clusters' local buffers are double-buffered too: a tile's operands go into one
        # half while the PEs compute on the other's, so a tile is sent only once the PEs are
        # done with the tile two before it. (A tile whose share is larger than a half is
        # taken as streamed through it as the PEs consume it.)
        self.local_halves = Pool("local_halves", self, capacity=2)
        self.records: list[PhaseRecord] = []
        pe = cfg.pe_cluster
        self.psum_bytes = ELEMENT_BYTES[pe.accumulates_in]  # a partial sum leaving the PEs
        self.prices = DesignPrices.of(cfg.technology, pe.precision, pe.accumulates_in,
                                      self.glb.bank_bytes, pe.local_buffer_kib * 1024,
                                      cfg.energy.given(), cfg.supply_voltage_v,
                                      cfg.vector_unit.precision if cfg.vector_unit else None)

    def _clusters_by_distance(self) -> list[str]:
        """Clusters in the order tiles fill them: nearest the GLB port first."""
        hops = nx.single_source_shortest_path_length(self.graph, self.port)
        return sorted(self.clusters, key=lambda c: (hops[c], c))

    # -- simulation ------------------------------------------------------------------------

    def replay(self, tables: Sequence[np.ndarray], waits: Sequence[int] | None = None) -> None:
        """Declare the pipeline's processes for these layer-phase tables (in order).
        `waits[j]`: the earlier phase whose write-back phase j's first fetch waits for
        (`mappings.mapper.phase_waits`; default: the one just before, a barrier each)."""
        rows = [t.tolist() for t in tables]
        col = COLUMNS
        # Each stage books what it counts to the phase of the tile it holds (a job).
        self._job = {(phase_rows[0][col["layer"]], phase_rows[0][col["phase"]]): j
                     for j, phase_rows in enumerate(rows) if phase_rows}
        waits = list(range(-1, len(rows) - 1)) if waits is None else list(waits)
        self._written = [self.env.event() for _ in rows]
        self._fetch_start = [0] * len(rows)
        # each tile's life in the pipeline, [start, end] ps: the fetcher turns to it, and
        # its results are in DRAM (tiles.csv)
        self.tile_spans: list[list[list[int]]] = [[[0, 0] for _ in r] for r in rows]
        p = self.stage_ports
        self.add_process(self._fetch, rows, waits, p["fetch_out"])
        self.add_process(self._distribute, p["distribute_in"], p["distribute_out"], daemon=True)
        if self.speculator is not None:
            self.add_process(self._speculate, p["speculate_in"], p["speculate_out"], daemon=True)
        self.add_process(self._compute, p["compute_in"], p["compute_out"], daemon=True)
        self.add_process(self._collect, p["collect_in"], p["collect_out"], daemon=True)
        self.add_process(self._writeback, rows, p["writeback_in"])

    def _fetch(self, tables: list[list[tuple]], waits: list[int], q_out: Port) -> Generator:
        col = COLUMNS
        for j, rows in enumerate(tables):
            self.env.active_process.job = j
            pending = waits[j] >= 0 and not self._written[waits[j]].triggered
            # The first tile's weights: no phase writes them, so they are read while the
            # phases this one waits for finish (a prefetch into the free half of the buffer).
            ahead = rows[0][col["weight_read_bytes"]] if pending and rows else 0
            start = int(self.env.now)
            if ahead:
                yield from self.operand_halves.take(1)
                fill = self.spawn(self.glb.access(ahead, "write"))
                yield from self.dram.transfer(ahead, is_write=False)
                yield fill
            if pending:
                yield self._written[waits[j]]
            self._fetch_start[j] = start if ahead else int(self.env.now)  # its first fetch
            for i, row in enumerate(rows):
                # the fetcher turns to the tile (it may wait for a free half of the buffer)
                self.tile_spans[j][i][0] = start if i == 0 and ahead else int(self.env.now)
                if i or not ahead:  # (a prefetching first tile holds its half already)
                    yield from self.operand_halves.take(1)
                nbytes = row[col["dram_read_bytes"]] - (ahead if i == 0 else 0)
                fill = self.spawn(self.glb.access(
                    nbytes + row[col["regenerated_bytes"]], "write"))
                regenerate = row[col["regenerated_weights"]]
                if regenerate and self.weight_generator is not None:
                    fill = self.env.all_of([fill, self.spawn(
                        self.weight_generator.generate(regenerate))])
                yield from self.dram.transfer(nbytes, is_write=False)
                yield fill
                yield from q_out.put(row)

    def _distribute(self, q_in: Port, q_out: Port) -> Generator:
        col = COLUMNS
        while True:
            row = yield from q_in.get()
            self._serve(row)
            if holds_local_half(row[col["vector_ops"]]):
                yield from self.local_halves.take(1)
            if self.selector is not None:
                yield from self.selector.scan(row[col["selector_entries"]])
            read = self.spawn(self.glb.access(row[col["glb_read_bytes"]], "read"))
            yield from self.noc.distribute(row[col["multicast_bytes"]], row[col["unicast_bytes"]],
                                           row[col["active_clusters"]])
            yield read
            yield from self.operand_halves.give(1)
            yield from q_out.put(row)

    def _speculate(self, q_in: Port, q_out: Port) -> Generator:
        col = COLUMNS
        while True:
            row = yield from q_in.get()
            self._serve(row)
            yield from self.speculator.predict(
                row[col["speculated_ops"]], _received(row),
                row[col["macs"]] if self._speculator_matches else 0)
            yield from q_out.put(row)

    def _compute(self, q_in: Port, q_out: Port) -> Generator:
        col = COLUMNS
        while True:
            row = yield from q_in.get()
            self._serve(row)
            if row[col["vector_ops"]]:
                yield from self.vector.process(row[col["vector_ops"]])
                yield from q_out.put(row)
                continue
            received = _received(row)
            self.pes.count("local_buffer_write_bytes", received)
            yield from self.pes.compute(row[col["busiest_pe_macs"]], row[col["processed_macs"]],
                                        received, row[col["compute_cycles"]],
                                        row[col["scanned_pairs"]], row[col["active_clusters"]])
            yield from self.local_halves.give(1)
            yield from q_out.put(row)

    def _collect(self, q_in: Port, q_out: Port) -> Generator:
        col = COLUMNS
        while True:
            row = yield from q_in.get()
            self._serve(row)
            if _has_results(row):  # a tile whose sums stay in the PEs holds no result half
                yield from self.result_halves.take(1)
            write = self.spawn(self.glb.access(_results_made(row), "write"))
            added = row[col["reduced_psums"]]
            if added:  # each partial sum after a tile's first is added into its running sum
                read = self.spawn(self.glb.access(added * self.psum_bytes, "read"))
                self.glb.count("psum_adds", added)
            yield from self.noc.gather(row[col["gather_bytes"]], row[col["active_clusters"]])
            yield write
            if added:
                yield read
            yield from q_out.put(row)

    def _writeback(self, tables: list[list[tuple]], q_in: Port) -> Generator:
        col = COLUMNS
        for j, rows in enumerate(tables):
            self.env.active_process.job = j
            if not rows:  # nothing to do: it ends where the phase before it did
                self._record(j, -1, -1, int(self.env.now))
                self._written[j].succeed()
                continue
            for i in range(len(rows)):
                row = yield from q_in.get()
                nbytes = row[col["dram_write_bytes"]]
                drain = self.spawn(self.glb.access(nbytes, "read"))
                yield from self.dram.transfer(nbytes, is_write=True)
                yield drain
                self.tile_spans[j][i][1] = int(self.env.now)
                if _has_results(row):
                    yield from self.result_halves.give(1)
            self._record(j, rows[0][col["layer"]], rows[0][col["phase"]], self._fetch_start[j])
            self._written[j].succeed()

    def _serve(self, row: tuple) -> None:
        """The running stage now works on this tile: book its actions to the tile's phase."""
        self.env.active_process.job = self._job[row[COLUMNS["layer"]], row[COLUMNS["phase"]]]

    def _record(self, j: int, layer: int, phase: int, start: int) -> None:
        """Close layer-phase j when its last result is written: its span, the time it adds
        to the run (since the previous phase closed: phases overlap, so that is how time is
        shared out), the actions its tiles counted, and those counted outside any phase in
        that time."""
        booked = self.sim.booked
        actions: dict[str, Counter] = defaultdict(Counter)
        for job in (j, None):
            for path, counts in booked.pop(job, {}).items():
                actions[path].update(counts)
        since = self.records[-1].end_ps if self.records else 0
        self.records.append(PhaseRecord(layer, phase, start, int(self.env.now), since,
                                        dict(actions)))

    # -- energy ------------------------------------------------------------------------------

    def energy_pj(self, actions: dict[str, Counter], since_ps: int, end_ps: int
                  ) -> dict[str, float]:
        """Price a set of actions (by module path) and the time [since_ps, end_ps) they took:
        picojoules per component and action, keyed "component.action" (`dram.activates`,
        `noc.byte_hops`)."""
        price = self.prices

        def of(module: str) -> Counter:
            return actions.get(f"{self.path}.{module}", Counter())

        glb, pes = of("glb"), of("pe_array")
        noc_bytes = Counter()  # bytes over the NoC's links, by what they pass (`link_role`)
        for edge, link in self.noc.links.items():
            noc_bytes[link_role(self.graph, edge)] += actions.get(link.path, Counter())["bytes"]
        energy = {f"dram.{action}": pj
                  for action, pj in self.dram.energy_pj(of("dram"), since_ps, end_ps).items()}
        energy.update({
            "global_buffer.read_bytes": glb["read_bytes"] * price.global_buffer_pj_per_byte,
            "global_buffer.write_bytes": glb["write_bytes"] * price.global_buffer_pj_per_byte,
            "noc.byte_hops": price.noc_pj_per_byte_hop * noc_bytes["hop"],
            "noc.port_bytes": price.noc_pj_per_byte_port * noc_bytes["port_in"],
            "local_buffers.write_bytes": pes["local_buffer_write_bytes"]
            * price.local_buffer_pj_per_byte,
            "local_buffers.read_bytes": pes["local_buffer_read_bytes"]
            * price.local_buffer_pj_per_byte,
            "macs.macs": pes["macs"] * price.mac_pj,
        })
        if self.cfg.static_power_mw is not None:  # mW x ns = pJ, over the span priced
            energy["static.power"] = self.cfg.static_power_mw * (end_ps - since_ps) / PS_PER_NS
        if self.cfg.index_matching is not None:
            spec = of("speculator")  # the speculator pairs the non-zeros of every output
            energy["index_matching.scanned_pairs"] = (
                (pes["scanned_pairs"] + spec["scanned_pairs"]) * price.index_scan_pj_per_pair)
            energy["index_matching.matched_pairs"] = (
                (pes["matched_pairs"] + spec["matched_pairs"]) * price.index_match_pj_per_pair)
        if self.selector is not None:
            energy["selector.entries"] = of("selector")["entries"] * price.selector_pj_per_entry
        if self.weight_generator is not None:
            energy["weight_generator.values"] = (of("weight_generator")["values"]
                                                 * price.weight_generator_pj_per_value)
        if self.cfg.mapping.reduces_across_clusters:
            energy["global_buffer.psum_adds"] = glb["psum_adds"] * price.psum_add_pj
        if self.vector is not None:
            energy["vector_unit.ops"] = of("vector_unit")["ops"] * price.vector_op_pj
        if self.speculator is not None:
            spec = of("speculator")
            energy["speculator.ops"] = spec["ops"] * price.speculator_pj_per_op
            energy["local_buffers.read_bytes"] += (spec["local_buffer_read_bytes"]
                                                   * price.local_buffer_pj_per_byte)
        return energy


def _has_results(row: tuple) -> bool:
    return bool(holds_result(row[COLUMNS["gather_bytes"]], row[COLUMNS["dram_write_bytes"]]))


def _results_made(row: tuple) -> int:
    """What a tile writes into the global buffer besides its fills: the sums the clusters
    gather, or the vector unit's results (made beside the buffer, not gathered)."""
    col = COLUMNS
    return (row[col["glb_write_bytes"]] - row[col["dram_read_bytes"]]
            - row[col["regenerated_bytes"]])


def _received(row: tuple) -> int:
    """Operand bytes a tile brings to the clusters' local buffers (a multicast counts once
    per active cluster)."""
    col = COLUMNS
    return (row[col["multicast_bytes"]] * row[col["active_clusters"]]
            + row[col["unicast_bytes"]])
