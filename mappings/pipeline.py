"""The mapper's estimates of a plan: how long a sequence of tiles takes in the tile
pipeline, and what it costs (`plan_key`, which ranks a phase's plans and inter-layer
reuse's spans of phases).

The accelerator runs tiles through stages in order (arch/accelerator.py: fetch from DRAM,
send over the NoC, compute, gather, write back), each stage one tile at a time, two-deep
buffers between them. With many tiles the stages overlap and the busiest stage sets the
time; one tile overlaps nothing and takes the sum of its stages. An estimate that took the
busiest stage alone would think one large tile as fast as many small ones, and a larger
buffer (fewer, larger tiles) could then make a design slower by the mapper's own choice.
`buffered_cycles` follows a plan's tiles through the stages one by one, as the accelerator
runs them; `equal_tiles_cycles` is its closed form for equal tiles, which the tile search
uses on every candidate shape. `estimated_cycles` adds what one DRAM channel can serve,
`estimated_pj` prices a plan's event rows, and `plan_key` puts both on the design's
objective.
"""

from __future__ import annotations

import numpy as np

from desim.events import holds_local_half, holds_result
from mappings.target import HardwareView


def equal_tiles_cycles(stage_cycles: list[float], tiles: int) -> float:
    """The makespan of `tiles` equal tiles sharing each stage's total (`stage_cycles`): the
    busiest stage's total plus the others' share of one tile, the fill and drain (what
    `buffered_cycles` gives for equal tiles)."""
    busiest = max(stage_cycles)
    return busiest + (sum(stage_cycles) - busiest) / max(tiles, 1)


def buffered_cycles(times: np.ndarray, has_results: np.ndarray | None = None,
                    on_pes: np.ndarray | None = None) -> float:
    """When the last of `times`' tiles leaves the pipeline (`buffered_schedule`)."""
    return buffered_schedule(times, has_results, on_pes=on_pes)[0]


def buffered_schedule(times: np.ndarray, has_results: np.ndarray | None = None,
                      gates: np.ndarray | None = None, on_pes: np.ndarray | None = None
                      ) -> tuple[float, list[float], list[float]]:
    """When the last of `times`' tiles leaves the pipeline as arch/accelerator.py runs it,
    and when each tile's fetch and write-back start (the order DRAM sees them in).
    Rows are tiles, columns the cycles of their five stages: fetch, distribute, compute,
    collect, write back. Each stage takes one tile at a time, in order. Between two stages a
    two-deep FIFO: a stage that finished a tile waits to pass it on until the next stage has
    started the tile two before it. A tile holds one of the global buffer's two operand
    halves from the start of its fetch to the end of its distribution, and a tile with
    results (`has_results`, default every tile) one of its two result halves from the start
    of its collection to the end of its write-back; a tile the PEs compute (`on_pes`,
    default every tile; not a vector layer's) one of the clusters' two local halves from
    the start of its distribution to the end of its compute. DRAM's reads and writes are
    taken as independent here (the caller bounds the time by one channel serving both from
    the starts this returns: `dram_busy_until`, below). `gates`, of a run of
    layer-phases: for each tile, the earlier tile whose write-back must end before it is
    fetched (a phase's first tile waits for the phases it needs, `mapper.phase_waits`), or
    -1.

    So it sees what depends on the buffers' depth: a heavy tile behind light ones that the
    NoC port holds up cannot fetch while they wait (there is no free half to fetch into),
    and its fetch adds to its distribution; each tile taken as long as its busiest stage,
    others hidden under it, would miss that."""
    rows = np.asarray(times, dtype=np.float64).tolist()
    holds = ([True] * len(rows) if has_results is None
             else np.asarray(has_results, dtype=bool).tolist())
    pes = [True] * len(rows) if on_pes is None else np.asarray(on_pes, dtype=bool).tolist()
    # per stage: when it may take its next tile (it passed its last on), and when it
    # started the last two tiles (the FIFO before it has room for a third once it has
    # started the first of them); when the halves come free, in order
    f_free = d_free = c_free = g_free = w_end = 0.0
    d_starts = c_starts = g_starts = w_starts = (0.0, 0.0)
    operand = result = local = (0.0, 0.0)
    waits = [-1] * len(rows) if gates is None else np.asarray(gates).tolist()
    fetches, writes, ends = [], [], []
    for (fetch, distribute, compute, collect, write), has, gate, pe in zip(
            rows, holds, waits, pes, strict=True):
        f0 = max(f_free, operand[0], ends[gate] if gate >= 0 else 0.0)
        fetches.append(f0)
        f_free = max(f0 + fetch, d_starts[0])
        d_get = max(f_free, d_free)   # it takes the tile, then waits for a local half
        d0 = max(d_get, local[0]) if pe else d_get
        operand = (operand[1], d0 + distribute)
        d_free = max(d0 + distribute, c_starts[0])
        c0 = max(d_free, c_free)
        if pe:
            local = (local[1], c0 + compute)
        c_free = max(c0 + compute, g_starts[0])
        g_get = max(c_free, g_free)   # it takes the tile, then waits for a result half
        g0 = max(g_get, result[0]) if has else g_get
        g_free = max(g0 + collect, w_starts[0])
        w0 = max(g_free, w_end)
        writes.append(w0)
        w_end = w0 + write
        ends.append(w_end)
        if has:
            result = (result[1], w_end)
        d_starts, c_starts = (d_starts[1], d_get), (c_starts[1], c0)
        g_starts, w_starts = (g_starts[1], g_get), (w_starts[1], w0)
    return w_end, fetches, writes


def plan_key(table: np.ndarray, hw: HardwareView, chunks: int,
             gates: np.ndarray | None = None) -> tuple:
    """What ranks the plans of a phase, smallest first: `hw.objective` on the estimates,
    then time, DRAM bytes and fewer chunks (so that without prices time decides). `gates`:
    of a run of phases, `buffered_schedule`'s."""
    cycles = estimated_cycles(table, hw, gates)
    pj = estimated_pj(table, hw, cycles)
    dram = int(table["dram_read_bytes"].sum() + table["dram_write_bytes"].sum())
    return (hw.objective_value(cycles, pj), cycles, pj, dram, chunks)


def estimated_cycles(table: np.ndarray, hw: HardwareView,
                     gates: np.ndarray | None = None) -> float:
    """A plan's time: its tiles through the pipeline's stages (`stage_cycles`), through
    the two-deep buffers (`buffered_schedule`, which takes DRAM's reads and writes as
    independent), and no earlier than one channel can serve them both
    (`dram_busy_until`). Trainer's speculation, a stage of its own, is not counted."""
    stages, read, write = stage_cycles(table, hw)
    end, fetches, writes = buffered_schedule(
        stages, holds_result(table["gather_bytes"], table["dram_write_bytes"]), gates,
        holds_local_half(table["vector_ops"]))
    return max(end, dram_busy_until(fetches, writes, read, write, hw.dram_switch_cycles))


def stage_cycles(table: np.ndarray, hw: HardwareView
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each tile's cycles in the pipeline's five stages (DRAM read, with the weight
    generator beside it; the selector's scan and the global buffer's NoC port out, the PEs,
    the port back, DRAM write), each a tile's bytes or MACs at its rate plus its fixed
    latency; and its DRAM read and write alone."""
    def stage(work: np.ndarray, rate: float, latency: float) -> np.ndarray:
        return np.where(work > 0, work / rate + latency, 0.0)

    dram, port = hw.dram_bytes_per_cycle, hw.noc_port_bytes_per_cycle
    read = stage(table["dram_read_bytes"], dram, hw.dram_latency_cycles)
    fetch = read
    if hw.weight_generator:  # it makes a tile's untracked weights while DRAM reads the rest
        fetch = np.maximum(read, np.ceil(table["regenerated_weights"] / hw.weight_generator))
    scan = 0.0  # the selector scans a tile's maps before the port sends what it picked
    if hw.selector_entries_per_cycle:
        scan = np.ceil(table["selector_entries"] / hw.selector_entries_per_cycle)
    write = stage(table["dram_write_bytes"], dram, hw.dram_latency_cycles)
    stages = np.stack([
        fetch, stage(table["multicast_bytes"] + table["unicast_bytes"], port,
                    hw.noc_latency_cycles) + scan,
        compute_cycles(table, hw),
        stage(table["gather_bytes"], port, hw.noc_latency_cycles), write], axis=1)
    return stages, read, write


def dram_busy_until(fetches: list[float], writes: list[float], read: np.ndarray,
                    write: np.ndarray, switch: float) -> float:
    """The earliest DRAM's one channel can finish the tiles' reads (`read` cycles each,
    starting no earlier than `fetches`) and writes (`write`, from `writes`): from any of
    those starts on, the channel still has every transaction that starts later to serve,
    and the bus turns between them (`switch` cycles each)."""
    events = sorted([(t, 0, c) for t, c in zip(fetches, read.tolist(), strict=True) if c]
                    + [(t, 1, c) for t, c in zip(writes, write.tolist(), strict=True) if c])
    until, work, last = 0.0, 0.0, None
    for t, direction, cycles in reversed(events):   # the work from each start on
        work += cycles + (switch if last is not None and last != direction else 0.0)
        last = direction
        until = max(until, t + work)
    return until


def compute_cycles(table: np.ndarray, hw: HardwareView) -> np.ndarray:
    """Each tile's time on the PEs, as arch/pe.py counts it: its busiest PE's MACs, or its
    pairs' scan over the active PEs when index matching takes longer, plus fill and drain;
    a vector layer's tile, its operations over the vector unit's lanes (arch/vector.py)."""
    cycles = np.ceil(table["busiest_pe_macs"] / hw.macs_per_pe_per_cycle)
    if hw.index_matching_bits:
        # in float64: clusters x PEs x bits a cycle can pass int32's range on a large design
        lanes = np.maximum(table["active_clusters"], 1).astype(np.float64) * hw.pes_per_cluster
        cycles = np.maximum(cycles, np.ceil(table["scanned_pairs"]
                                            / (lanes * hw.index_matching_bits)))
    cycles = np.where(cycles > 0, cycles + hw.pipeline_cycles, 0.0)
    if hw.vector_lanes:
        cycles = cycles + np.ceil(table["vector_ops"] / hw.vector_lanes)
    return cycles


def estimated_pj(table: np.ndarray, hw: HardwareView, cycles: float) -> float:
    """A plan's energy at the view's prices: its MACs and vector operations, the bytes it
    moves through DRAM, the global buffer (whose
    write-backs read what goes to DRAM), the NoC and the clusters' buffers, the partial
    sums added at the buffer, and DRAM standby while it runs."""
    def total(column: str) -> float:
        return float(table[column].sum())

    local_writes = float((table["multicast_bytes"] * table["active_clusters"]).sum())
    adds = total("reduced_psums")  # each a running sum read back
    return hw.estimated_pj(
        macs=total("processed_macs"), vector_ops=total("vector_ops"),
        dram=total("dram_read_bytes") + total("dram_write_bytes"),
        glb=total("glb_read_bytes") + total("glb_write_bytes") + total("dram_write_bytes")
        + adds * hw.psum_bytes, adds=adds,
        unicast=total("unicast_bytes") + total("gather_bytes"),
        multicast=total("multicast_bytes"), local=local_writes + total("unicast_bytes"),
        cycles=cycles, scanned=total("scanned_pairs"),
        matched=float(table["processed_macs"][table["scanned_pairs"] > 0].sum()))
