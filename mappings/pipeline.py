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
runs them, DRAM's one channel serving the fetches' reads and the write-backs in the order
they are asked for (a fetch waits behind a long write-back); `equal_tiles_cycles` is its
closed form for equal tiles, reads and writes apart, which the tile search uses on every
candidate shape. `estimated_cycles` times a plan's tiles so, `estimated_pj` prices its
event rows, and `plan_key` puts both on the design's objective. A WG's plans are ranked
with the tiles of the phases they overlap (`Overlap`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from desim.events import concat_tables, holds_local_half, holds_result
from mappings.target import HardwareView


def equal_tiles_cycles(stage_cycles: list[float], tiles: int, first_fetch: float = 0.0
                       ) -> float:
    """The makespan of `tiles` equal tiles sharing each stage's total (`stage_cycles`): the
    busiest stage's total plus the others' share of one tile, the fill and drain (what
    `buffered_cycles` gives for equal tiles whose reads and writes do not meet on DRAM's
    channel). `first_fetch`: the first tile's time in the first stage where it is longer
    than the others' (a block held across the inner loop is fetched with the first tile of
    its sweep): nothing overlaps it, so the plan takes no less than it and the other
    stages' tiles after it (again what `buffered_cycles` gives)."""
    busiest = max(stage_cycles)
    equal = busiest + (sum(stage_cycles) - busiest) / max(tiles, 1)
    if first_fetch <= 0 or len(stage_cycles) < 2:
        return equal
    return max(equal, first_fetch + equal_tiles_cycles(stage_cycles[1:], tiles))


def buffered_cycles(times: np.ndarray, has_results: np.ndarray | None = None,
                    gates: np.ndarray | None = None, on_pes: np.ndarray | None = None,
                    reads: np.ndarray | None = None,
                    ahead: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """When the last of `times`' tiles leaves the pipeline as arch/accelerator.py runs it.
    Rows are tiles, columns the cycles of their five stages: fetch, distribute, compute,
    collect, write back. Each stage takes one tile at a time, in order. Between two stages a
    two-deep FIFO: a stage that finished a tile waits to pass it on until the next stage has
    taken the tile two before it. A tile holds one of the global buffer's two operand
    halves from the start of its fetch to the end of its distribution, and a tile with
    results (`has_results`, default every tile) one of its two result halves from the start
    of its collection to the end of its write-back; a tile the PEs compute (`on_pes`,
    default every tile; not a vector layer's) one of the clusters' two local halves from
    the start of its distribution to the end of its compute. `gates`, of a run of
    layer-phases: for each tile, the earlier tile whose write-back must end before it is
    fetched (a phase's first tile waits for the phases it needs, `mapper.phase_waits`), or
    -1.

    So it sees what depends on the buffers' depth: a heavy tile behind light ones that the
    NoC port holds up cannot fetch while they wait (there is no free half to fetch into),
    and its fetch adds to its distribution; each tile taken as long as its busiest stage,
    others hidden under it, would miss that.

    DRAM has one channel for the fetches' reads (`reads`, each tile's part of its fetch
    that DRAM serves, default all of it; the weight generator works beside it) and the
    write-backs: like arch/dram.py's controller it serves them whole, one at a time, in
    the order they are asked for (a write-back first where both are asked for at once, as
    where a phase's first fetch waits for a write-back to end and the next one is queued).
    So a fetch waits behind a long write-back asked for before it, as in the accelerator.
    The bus's turns between reads and writes are not counted: the replay hides most of
    them under the latency each transaction is charged here (counted, the estimate was
    further from the replay: benchmarks/plan_estimate.py).

    A gated tile whose gate is not written back when the fetcher turns to it reads its
    weights ahead, as arch/accelerator.py's fetch does (no phase writes them): into a free
    half, on DRAM's channel, before the gate; the rest of its read after. `ahead`: each
    tile's DRAM cycles of those weights and of the rest (zero where there is nothing to
    read ahead). Without it, a phase after one large tile (which leaves a half free for
    that read) was estimated as slow as after many small ones, which leave none: LeNet-5's
    first pooling as one tile before its conv, 16,663 cycles against 15,468 replayed."""
    n, pad = len(times), 3   # three empty tiles, done at 0, stand before the first
    cols = np.vstack([np.zeros((pad, 5)), np.asarray(times, dtype=np.float64).reshape(n, 5)])
    fetch, distribute, compute, collect, write = cols.T.tolist()
    read = fetch if reads is None else [0.0] * pad + np.asarray(reads, np.float64).tolist()
    early, rest = (([0.0] * pad + np.asarray(a, np.float64).tolist() for a in ahead)
                   if ahead is not None else ([0.0] * (n + pad), read))
    started: dict[int, float] = {}  # tiles whose weights were read ahead: when they began
    pre_end: dict[int, float] = {}  # ... and when that read ended
    gate = [pad - 1] * (n + pad) if gates is None else (
        [pad - 1] * pad + (np.asarray(gates) + pad).tolist())
    result_wait = _half_waits(has_results, n, pad)   # the tile whose write-back frees its half
    local_wait = _half_waits(on_pes, n, pad)         # ... whose compute frees its local half
    # per tile: when its fetch and distribution end, its compute starts and ends, the
    # collector takes it (then waits for a result half) and is done with it, its write-back
    # is asked for and ends
    f_end, d_end, c_start, c_end, g_take, g_end, w_ask, w_end = (
        [0.0] * (n + pad) for _ in range(8))
    # In tile order a later tile may ask to fetch before an earlier one asks to write back
    # (up to some ten tiles apart, through the FIFOs and halves), so each stage counts the
    # tiles it is done with: fetched, distributed, computed, taken and done by the
    # collector, written back. DRAM is free from `free` on.
    nf = nd = nc = nt = ng = nw = pad
    free = 0.0

    def serve(ask: float, cycles: float) -> float:
        """When a transaction asked for at `ask` ends: DRAM takes it once it is free (one
        of no bytes asks it for nothing)."""
        nonlocal free
        if not cycles:
            return ask
        free = max(ask, free) + cycles
        return free

    while nw < n + pad:
        # The stages between DRAM's read and write take every tile whose times are known: a
        # stage takes tile j once the stage before is done with it, it has passed tile j-1
        # on (the stage after has taken j-3: the FIFO between them holds two) and it has
        # its half (the distributor a local one, the collector a result one).
        while True:
            j = nd   # distribution
            if j < nf and nc > j - 3 and nc > local_wait[j]:
                d_end[j] = max(f_end[j], d_end[j - 1], c_start[j - 3],
                               c_end[local_wait[j]]) + distribute[j]
                nd += 1
                continue
            j = nc   # compute
            if j < nd and nt > j - 3:
                c_start[j] = max(d_end[j], c_end[j - 1], g_take[j - 3])
                c_end[j] = c_start[j] + compute[j]
                nc += 1
                continue
            j = nt   # the collector takes the tile (done with the one before)
            if j < nc and j == ng and nw >= j - 3:
                g_take[j] = max(c_end[j], g_end[j - 1], w_ask[j - 3])
                nt += 1
                continue
            j = ng   # ... and collects it; the write-back stage asks for it if it is next
            if j < nt and nw > result_wait[j]:
                g_end[j] = max(g_take[j], w_end[result_wait[j]]) + collect[j]
                ng += 1
                if j == nw:
                    w_ask[j] = max(g_end[j], w_end[j - 1])
                continue
            break
        # DRAM serves the next read or the next write, whichever was asked for first. One
        # not known yet waits for the other's end (a fetch, through the buffers, for an
        # earlier tile's write-back; a write-back for its own tile's fetch): it is later.
        j, ask, early_read = nf, None, False
        if j in pre_end:  # its weights read ahead: the rest once its gate is written back
            if nw > gate[j]:
                ask = max(pre_end[j], w_end[gate[j]])
        elif j < n + pad and nd > j - 2:
            # the fetcher is done with tile j-1 and a half is free (tile j-2 is distributed,
            # so the FIFO after the fetcher has room too); its gate is written back, or it
            # reads its weights ahead (the gate not written back when the fetcher turned to
            # it: not known yet, it is later)
            turn = max(f_end[j - 1], d_end[j - 2])
            if early[j] and (nw <= gate[j] or w_end[gate[j]] > f_end[j - 1]):
                ask, early_read = turn, True
            elif nw > gate[j]:
                ask = max(turn, w_end[gate[j]])
        if ask is not None and (nw == ng or ask < w_ask[nw]):
            if early_read:
                started[j], pre_end[j] = ask, serve(ask, early[j])
            elif j in pre_end:
                f_end[j] = max(serve(ask, rest[j]), started[j] + fetch[j])
                nf += 1
            else:
                f_end[j] = max(serve(ask, read[j]), ask + fetch[j])
                nf += 1
        else:
            w_end[nw] = serve(w_ask[nw], write[nw])
            nw += 1
            if nw < ng:
                w_ask[nw] = max(g_end[nw], w_end[nw - 1])
    return w_end[-1]


def _half_waits(holds: np.ndarray | None, n: int, pad: int) -> list[int]:
    """For each of `n` tiles after `pad` empty ones: the tile whose end frees the half of a
    double buffer it takes, the one two before it of those that hold one (`holds`, default
    every tile); `pad - 1` (an empty tile) where it holds none or waits for none."""
    flags = [True] * n if holds is None else np.asarray(holds, dtype=bool).tolist()
    waits, last = [pad - 1] * (n + pad), [pad - 1, pad - 1]
    for j, holds_one in enumerate(flags, start=pad):
        if holds_one:
            waits[j] = last[0]
            last = [last[1], j]
    return waits


def plan_key(table: np.ndarray, hw: HardwareView, chunks: int,
             gates: np.ndarray | None = None) -> tuple:
    """What ranks the plans of a phase, smallest first: `hw.objective` on the estimates,
    then time, DRAM bytes and fewer chunks (so that without prices time decides). `gates`:
    of a run of phases, `buffered_cycles`'s. A phase mapped with `hw.overlap` (a WG) is
    estimated with its neighbours' tiles (`Overlap`)."""
    if hw.overlap is not None and gates is None:  # with its neighbours' tiles
        cycles = hw.overlap.cycles(table, hw)
        pj = estimated_pj(table, hw, cycles) + hw.overlap.pj
    else:
        cycles = estimated_cycles(table, hw, gates)
        pj = estimated_pj(table, hw, cycles)
    dram = int(table["dram_read_bytes"].sum() + table["dram_write_bytes"].sum())
    return (hw.objective_value(cycles, pj), cycles, pj, dram, chunks)


@dataclass(frozen=True, eq=False)
class Overlap:
    """The tiles a layer's WG runs between. A WG does not wait for its layer's BP
    (`mapper.phase_waits`): its first tiles are fetched while the BP's last ones are still
    in the pipeline. Nor does the phase after it (the previous layer's BP, or that of a
    vector layer between the two) wait for it, unless a weight update comes between (it
    waits for the WG's dW): that phase's first tiles are fetched while the WG's last ones
    compute and write back. Ranked alone, a plan of few large tiles paid a fill and a
    drain that the run hides, and the mapper chose finer chunks than it should
    (LeNet-300-100 on trainer.yaml: 4 chunks where 2 took less time). So a WG's plans are
    ranked as inter-layer reuse ranks a run of phases (`mapper._span_key`): the objective
    of the plan's tiles between `before`, its BP's last tiles, and `after`, the first
    tiles of the phase that runs next (`mapper.PhaseMapper` maps it first); none where an
    update follows, or nothing does. (The BP's own first tiles had stood in for that
    phase, mapped after the WG; in ResNet-18 it is a batch norm's BP on the vector unit,
    nothing like a conv's tiles; with the WGs ranked between their true neighbours,
    ResNet-18 at 32 x 32, batch 2, ran in 0.2-1.6% fewer cycles on four designs.) `pj`:
    the neighbours' energy (standby aside). `fetched`, `after_totals`: what floors the
    cycles of any plan between them (`floor_cycles`)."""
    before: np.ndarray
    after: np.ndarray
    pj: float
    fetched: float
    after_totals: np.ndarray
    after_waits: bool = False

    TILES = 8  # of each neighbour: enough to fill the two-deep buffers between 5 stages

    @classmethod
    def around(cls, bp_rows: np.ndarray, next_rows: np.ndarray, hw: HardwareView,
               after_waits: bool = False) -> Overlap:
        """The neighbours of a WG: the last tiles of its BP (`bp_rows`) and the first of the
        phase after it (`next_rows`; none where it waits for the WG). Of a vector pass
        (`mappings.mapper`): the last tiles of a WG or update it does not wait for, and the
        first of the phase after it, which waits for it (`after_waits`)."""
        before, after = bp_rows[-cls.TILES:], next_rows[:cls.TILES]
        return cls(before, after, estimated_pj(concat_tables([before, after]), hw, 0.0),
                   float(stage_cycles(before, hw)[0][:, 0].sum()), stage_totals(after, hw),
                   after_waits)

    def cycles(self, table: np.ndarray, hw: HardwareView) -> float:
        """The cycles of the neighbours with `table`'s tiles between them."""
        rows = concat_tables([self.before, table, self.after])
        return estimated_cycles(rows, hw, _after_gated(len(self.before), len(table),
                                                       len(self.after), self.after_waits))

    def floor_cycles(self, totals: np.ndarray) -> float:
        """A floor under `cycles` of a plan whose stage totals (`_ChunkFloor`'s six: fetch,
        send, compute, collect, write, DRAM both ways) are at least `totals`. Every stage
        takes tiles one at a time in order, and the plan's tiles and then `after`'s are
        fetched once `before`'s are (no sooner than `fetched`, their fetches end to end):
        so the run lasts at least `fetched` plus the plan's and `after`'s totals on any
        stage. (It had been the neighbours' own cycles plus what the plan's totals exceed
        of what they leave idle; but a tile put between them can shorten them, as the
        order in which DRAM is asked for their reads and writes changes: one random case
        in a hundred, and the floor then gave up plans that might have won.)"""
        return self.fetched + float(np.max(totals + self.after_totals))


def _after_gated(before: int, tiles: int, after: int, after_waits: bool = False
                 ) -> np.ndarray:
    """`buffered_cycles`'s gates of `before` tiles, `tiles` and `after` tiles: the after
    phase's first tile waits for the before phase's write-backs (`after_waits`: for the
    tiles' too), nothing else waits."""
    gates = np.full(before + tiles + after, -1)
    if after:
        gates[before + tiles] = before + tiles * after_waits - 1
    return gates


def estimated_cycles(table: np.ndarray, hw: HardwareView,
                     gates: np.ndarray | None = None) -> float:
    """A plan's time: its tiles through the pipeline's stages (`stage_cycles`) and the
    two-deep buffers, DRAM's one channel serving their reads and writes in the order they
    are asked for (`buffered_cycles`). Trainer's speculation, a stage of its own, is not
    counted."""
    stages, read, _ = stage_cycles(table, hw)
    ahead = None
    if gates is not None:  # a gated tile's weights, read before its gate (`buffered_cycles`)
        weights = np.where(np.asarray(gates) >= 0, np.minimum(table["weight_read_bytes"],
                                                             table["dram_read_bytes"]), 0)
        ahead = (_dram_cycles(weights, hw),
                 _dram_cycles(table["dram_read_bytes"] - weights, hw))
    return buffered_cycles(
        stages, holds_result(table["gather_bytes"], table["dram_write_bytes"]), gates,
        holds_local_half(table["vector_ops"]), read, ahead)


def _transfer_cycles(nbytes: np.ndarray, rate: float | np.ndarray,
                     latency: float | np.ndarray) -> np.ndarray:
    """Each transfer's cycles: its bytes at `rate` plus its fixed `latency`, none where it
    moves nothing (rates and latencies may be a column each for rows of transfers)."""
    return np.where(nbytes > 0, nbytes / rate + latency, 0.0)


def _dram_cycles(nbytes: np.ndarray, hw: HardwareView) -> np.ndarray:
    """DRAM's cycles for each of these transactions (a tile's read or write, `stage_cycles`):
    its bytes at DRAM's rate plus its latency."""
    return _transfer_cycles(nbytes, hw.dram_bytes_per_cycle, hw.dram_latency_cycles)


def stage_cycles(table: np.ndarray, hw: HardwareView
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each tile's cycles in the pipeline's five stages (DRAM read, with the weight
    generator beside it; the selector's scan and the global buffer's NoC port out, the PEs,
    the port back, DRAM write), each a tile's bytes or MACs at its rate plus its fixed
    latency, the port's stages no shorter than the buffer's reads and writes beside them
    (arch/accelerator.py's distribute and collect); and its DRAM read and write alone."""
    # Each transfer's bytes (a row each: DRAM read and write, the port out and back, and
    # the buffer's reads, results and running sums) at its rate plus its latency, all in
    # one array: with a plan's few tiles, a numpy call per column had been the estimates'
    # dearest part.
    dram, port = hw.dram_bytes_per_cycle, hw.noc_port_bytes_per_cycle
    works = [table["dram_read_bytes"], table["dram_write_bytes"],
             table["multicast_bytes"] + table["unicast_bytes"], table["gather_bytes"]]
    rates = [dram, dram, port, port]
    latencies = [hw.dram_latency_cycles] * 2 + [hw.noc_latency_cycles] * 2
    if hw.glb_bytes_per_cycle:
        works += [table["glb_read_bytes"],
                  table["glb_write_bytes"] - table["dram_read_bytes"] - table["regenerated_bytes"],
                  table["reduced_psums"] * hw.psum_bytes]
        rates += [hw.glb_bytes_per_cycle] * 3
        latencies += [hw.glb_latency_cycles] * 3
    cycles = _transfer_cycles(np.array(works, dtype=np.float64), np.array(rates)[:, None],
                              np.array(latencies)[:, None])
    read, write, send, gather = cycles[:4]
    fetch = read
    if hw.weight_generator:  # it makes a tile's untracked weights while DRAM reads the rest
        fetch = np.maximum(read, np.ceil(table["regenerated_weights"] / hw.weight_generator))
    scan = 0.0  # the selector scans a tile's maps before the port sends what it picked
    if hw.selector_entries_per_cycle:
        scan = np.ceil(table["selector_entries"] / hw.selector_entries_per_cycle)
    if hw.glb_bytes_per_cycle:
        # The buffer reads out what the port sends while it sends it, and writes the results
        # (and reads the running sums they are added to) while the port gathers them: each
        # stage takes the longer. A vector layer's tile sends and gathers nothing: the
        # buffer's time alone.
        send = np.maximum(send, cycles[4])
        gather = np.maximum(gather, np.maximum(cycles[5], cycles[6]))
    stages = np.stack([fetch, send + scan, compute_cycles(table, hw), gather, write], axis=1)
    return stages, read, write


def stage_totals(table: np.ndarray, hw: HardwareView) -> np.ndarray:
    """Each stage's cycles over a table's tiles (`stage_cycles`), and DRAM's reads and
    writes together: no run of those tiles is shorter than any of the six, whatever else
    it runs (the plan floors, `planner._ChunkFloor`, and `Overlap.floor_cycles`)."""
    stages, read, write = stage_cycles(table, hw)
    return np.append(stages.sum(axis=0), read.sum() + write.sum())


def compute_cycles(table: np.ndarray, hw: HardwareView) -> np.ndarray:
    """Each tile's time on the PEs, as arch/pe.py counts it: its busiest PE's MACs, or its
    pairs' scan over the active PEs when index matching takes longer, plus fill and drain;
    a vector layer's tile, its operations over the vector unit's lanes (arch/vector.py).
    On a systolic array, a tile's share of its layer-phase's closed-form cycles, as its
    planned table gives it (`compute_cycles`); the tiles of the layer-phase being planned
    have none yet, and take its rate (`systolic_cycles_per_mac`)."""
    if hw.systolic is not None:
        cycles = table["compute_cycles"].astype(np.float64)
        if hw.systolic_cycles_per_mac:
            cycles = np.where(cycles > 0, cycles,
                              np.ceil(table["macs"] * hw.systolic_cycles_per_mac))
    else:
        cycles = np.ceil(table["busiest_pe_macs"] / hw.macs_per_pe_per_cycle)
        if hw.index_matching_bits:
            # in float64: clusters x PEs x bits a cycle can pass int32's range on a large
            # design
            lanes = (np.maximum(table["active_clusters"], 1).astype(np.float64)
                     * hw.pes_per_cluster)
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
    # Summed as Python ints: a plan has a few rows, and numpy's sum call of each of the
    # thirteen columns took several times as long (the estimates price thousands of plans).
    def total(column: str) -> float:
        return float(sum(table[column].tolist()))

    local_writes = float(sum(map(operator.mul, table["multicast_bytes"].tolist(),
                                 table["active_clusters"].tolist())))
    adds = total("reduced_psums")  # each a running sum read back
    return hw.estimated_pj(
        macs=total("processed_macs"), vector_ops=total("vector_ops"),
        dram=total("dram_read_bytes"), dram_write=total("dram_write_bytes"),
        glb=total("glb_read_bytes") + total("glb_write_bytes") + total("dram_write_bytes")
        + adds * hw.psum_bytes, adds=adds,
        unicast=total("unicast_bytes") + total("gather_bytes"),
        multicast=total("multicast_bytes"), local=local_writes + total("unicast_bytes"),
        cycles=cycles, scanned=total("scanned_pairs"),
        matched=float(sum(macs for macs, pairs in zip(table["processed_macs"].tolist(),
                                                      table["scanned_pairs"].tolist(),
                                                      strict=True) if pairs > 0)))
