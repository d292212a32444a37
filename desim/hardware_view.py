"""The mapper's view of an assembled accelerator (`mappings.target.HardwareView`).

The top joins the two halves: `arch` does not import `mappings`, and the mapper sees the
hardware only through this view: its sizes, its rates, the fixed latencies of a tile's
stages and the prices its estimates use, all read from the elaborated modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from arch.accelerator import Accelerator
from arch.energy import ELEMENT_BYTES, WEIGHT_BITS
from arch.noc import Link, link_role
from arch.systolic import layer_cycles
from mappings.target import HardwareView


def hardware_view(acc: Accelerator) -> HardwareView:
    """What the mapper needs to know of an assembled accelerator (the top joins the two:
    `arch` does not import `mappings`)."""
    s = acc.cfg.sparsity
    return HardwareView(
        clusters=len(acc.clusters), pes_per_cluster=acc.cfg.pe_cluster.pes,
        buffer_bytes=acc.glb.capacity_bytes // 2,
        local_buffer_bytes=acc.cfg.pe_cluster.local_buffer_kib * 1024,
        macs_per_pe_per_cycle=acc.cfg.pe_cluster.macs_per_pe_per_cycle,
        dram_bytes_per_cycle=acc.dram.system.streaming_bandwidth_bytes_per_s
        / acc.clock.frequency_hz,
        noc_port_bytes_per_cycle=acc.cfg.noc.link_bandwidth_bytes_per_cycle,
        **_tile_latencies(acc),
        element_bytes=ELEMENT_BYTES[acc.cfg.pe_cluster.precision],
        accumulator_bytes=ELEMENT_BYTES[acc.cfg.pe_cluster.accumulates_in],
        skip_zero_weights=s.skip_zero_weights,
        skip_zero_activations=_skip_flag(s.skip_zero_activations),
        skip_zero_gradients=_skip_flag(s.skip_zero_gradients),
        skip_pruned_weight_gradients=s.skip_pruned_weight_gradients,
        channel_compaction=s.channel_compaction, weight_format=s.weight_format,
        activation_format=s.activation_format, selector_entries_per_cycle=(
            acc.cfg.selector.entries_per_cycle if acc.cfg.selector else 0.0),
        selector_levels=acc.cfg.selector.levels if acc.cfg.selector else 2,
        dataflow=acc.cfg.mapping.dataflow, partitions=acc.cfg.mapping.partitions,
        skip_relu_masked_gradients=s.skip_relu_masked_gradients,
        load_balance=acc.cfg.mapping.load_balance,
        vector_lanes=acc.cfg.vector_unit.lanes if acc.cfg.vector_unit else 0,
        fused_relu=acc.cfg.vector_unit.fused_relu if acc.cfg.vector_unit else True,
        fused_batchnorm=bool(acc.cfg.vector_unit and acc.cfg.vector_unit.fused_batchnorm),
        fused_residual=acc.cfg.vector_unit.fused_residual if acc.cfg.vector_unit else True,
        fused_update=bool(acc.cfg.vector_unit and acc.cfg.vector_unit.fused_update),
        # a ternary datapath stores 2-bit weights unless the config says otherwise
        weight_bits=s.weight_bits or WEIGHT_BITS.get(acc.cfg.pe_cluster.precision, 0),
        weight_group=s.weight_group or 0,
        circulant_fft=s.circulant_fft,
        weight_generator=(acc.cfg.weight_generator.values_per_cycle if acc.cfg.weight_generator
                          else 0.0),
        speculate_relu_outputs=acc.speculator is not None,
        speculated_norm_reads_every=bool(acc.cfg.speculator and
                                         acc.cfg.speculator.norm_backward_reads == "every"),
        index_matching_bits=(acc.cfg.index_matching.bits_per_cycle if acc.cfg.index_matching
                             else 0),
        systolic=(partial(layer_cycles, acc.cfg.pe_cluster.systolic)
                  if acc.cfg.pe_cluster.systolic is not None else None),
        objective=acc.cfg.mapping.objective,
        inter_layer_reuse=acc.cfg.mapping.inter_layer_reuse, **_move_prices(acc))


def _skip_flag(flag: bool | list[str]) -> bool | tuple[str, ...]:
    """An operand's skip flag for the mapper, as the design gives it (true, false, or the
    phases named: the config has made a list of every phase true): a list as a tuple, for
    the frozen view."""
    return tuple(flag) if isinstance(flag, list) else flag


def _tile_latencies(acc: Accelerator) -> dict[str, float]:
    """The fixed cycles a tile spends in the pipeline's stages besides moving its bytes and
    doing its MACs, for `hardware_view`: DRAM's activate-to-data latency (tRCD + CL) and
    the cost of turning its bus between reads and writes, the longest route from the
    buffer's port to a cluster, the PEs' fill and drain; and the global buffer's rate and
    latency, which a tile's reads and writes of it take."""
    t = acc.dram.timing
    return {
        "dram_latency_cycles": (t.trcd + t.cl) * t.tck_ps / float(acc.clock.period_ps),
        "dram_switch_cycles": acc.dram.system.direction_switch_ps() / float(acc.clock.period_ps),
        "noc_latency_cycles": max(sum(acc.graph.edges[e]["latency_cycles"] for e in route)
                                  for route in _cluster_routes(acc)),
        "pipeline_cycles": acc.cfg.pe_cluster.pipeline_cycles,
        "glb_bytes_per_cycle": float(acc.glb.bytes_per_cycle),
        "glb_latency_cycles": float(acc.cfg.global_buffer.latency_cycles),
    }


def _move_prices(acc: Accelerator) -> dict[str, float]:
    """The design's prices (`Accelerator.prices`) the tiler's estimate needs (pJ), for
    `hardware_view`."""
    price = acc.prices
    dram = acc.dram.energy
    cycle_ns = 1e3 / acc.cfg.core_clock_mhz
    noc = acc.noc
    routes = [_noc_pj_per_byte(acc, route) for route in _cluster_routes(acc)]
    tree = noc.table.multicast_tree(noc.src, noc.clusters)
    return {
        "mac_pj": price.mac_pj,
        "dram_pj_per_byte": dram.pj_per_bit_read * 8,
        "dram_write_pj_per_byte": dram.pj_per_bit_write * 8,
        "static_pj_per_cycle": ((acc.dram.idle_standby_mw + dram.refresh_mw) * acc.dram.channels
                                + (acc.cfg.static_power_mw or 0.0)) * cycle_ns,
        "dram_awake_pj_per_byte": _dram_awake_pj_per_byte(acc),
        "glb_pj_per_byte": price.global_buffer_pj_per_byte,
        "local_pj_per_byte": price.local_buffer_pj_per_byte,
        "noc_pj_per_byte": sum(routes) / len(routes),
        "noc_multicast_pj_per_byte": _noc_pj_per_byte(acc, tree),
        "index_scan_pj": price.index_scan_pj_per_pair if acc.cfg.index_matching else 0.0,
        "index_match_pj": price.index_match_pj_per_pair if acc.cfg.index_matching else 0.0,
        "psum_add_pj": price.psum_add_pj,
        "vector_op_pj": price.vector_op_pj,
    }


def _dram_awake_pj_per_byte(acc: Accelerator) -> float:
    """The standby above the idle one (`idle_standby_mw`) a byte moved keeps the channels
    drawing: the active standby while they stream it at their streaming bandwidth. 0 with
    power-down off, where idle and busy channels draw the same. An estimate: a tile-sized
    transfer keeps them up longer (its latency), and an idle gap shorter than the timer
    too."""
    dram = acc.dram
    ns_per_byte = 1e9 / dram.system.streaming_bandwidth_bytes_per_s
    return (dram.energy.background_mw - dram.idle_standby_mw) * dram.channels * ns_per_byte


def _noc_pj_per_byte(acc: Accelerator, links: Iterable[Link]) -> float:
    """A byte sent once over each of these NoC links, as the run's energy prices it: a hop
    between routers, the first router from a port, nothing into an endpoint (`link_role`)."""
    return sum(acc.prices.noc_pj_per_byte(link_role(acc.graph, edge)) for edge in links)


def _cluster_routes(acc: Accelerator) -> list[list]:
    """The NoC's route (its links) from the global buffer's port to each cluster."""
    noc = acc.noc
    return [noc.table.route(noc.src, c) for c in noc.clusters]
