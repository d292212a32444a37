"""Opt-in observability: a Chrome/Perfetto trace of transactions and a VCD waveform.

Off by default and free when off: every hook in the kernel and the hardware models is guarded
by `if self.tracer:` (one attribute test). `Simulator.enable_tracing(trace_path, vcd_path)`
hands every module a `Tracer`; from then on

- `Module.traced(name, start_ps, end_ps, track=None)` (and the built-in hook in
  `hold_links`, one slice per link per transfer) records a *slice*: one transaction, the span
  of time the module spent on it;
- `Fifo` reports each change of its depth, `Pool` of its units in use (the global buffer's
  halves).

Nothing is written while the simulation runs: slices may be reported after the fact (a link
knows its span when it releases) or ahead of it (a DRAM controller times a transaction when it
starts), and a VCD file must be written in time order, so both files are produced at the end by
`Simulator.finish_tracing()`.

Chrome trace (open in https://ui.perfetto.dev or chrome://tracing): one track (tid) per module,
or per sub-track when a module works on several transactions at once (`track="read"` gives
`top.glb.read`). Slices on one track never overlap: any that would are moved to an extra lane
(`top.glb.read#2`). Times are microseconds (the format's unit) as floats from integer ps. Each
FIFO's depth, and each pool's units in use, is a counter track (`top.q.depth`,
`top.operand_halves.in_use`).

VCD (open in GTKWave or Surfer): `busy` (1 bit) per module, high while any of its slices is
open, `depth` (integer) per FIFO and `in_use` per pool; timescale 1 ps, so times are the
simulator's own.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcd import VCDWriter

from desim.channels import Fifo, Pool
from desim.results import write_atomic

if TYPE_CHECKING:
    from desim.module import Module, Simulator

PS_PER_US = 1_000_000

# (module path, sub-track or None, slice name, start ps, end ps, args or None)
SliceRecord = tuple[str, str | None, str, int, int, dict[str, Any] | None]


class Tracer:
    """Collects slices and FIFO depths during a run; writes the trace and VCD files after it."""

    def __init__(self, sim: Simulator, trace_path: str | Path | None = None,
                 vcd_path: str | Path | None = None) -> None:
        self.sim = sim
        self.trace_path = Path(trace_path) if trace_path is not None else None
        self.vcd_path = Path(vcd_path) if vcd_path is not None else None
        self.slices: list[SliceRecord] = []
        self.depths: dict[str, list[tuple[int, int]]] = defaultdict(list)  # path -> (ps, depth)

    # -- hooks (called only while tracing is on) -------------------------------------------

    def slice(self, module: Module, name: str, start_ps: int, end_ps: int,
              track: str | None = None, args: dict[str, Any] | None = None) -> None:
        """One transaction of `module` over [start_ps, end_ps); empty spans are dropped."""
        if end_ps > start_ps:
            self.slices.append((module.path, track, name, int(start_ps), int(end_ps), args))

    def depth(self, module: Module, level: int, now_ps: int) -> None:
        """A FIFO's depth or a pool's units in use is `level` from `now_ps` on."""
        self.depths[module.path].append((int(now_ps), level))

    # -- output ----------------------------------------------------------------------------

    def write(self, end_ps: int) -> list[Path]:
        """Write the files asked for; return their paths."""
        written = []
        if self.trace_path is not None:
            write_atomic(self.trace_path, self.chrome_trace_text())
            written.append(self.trace_path)
        if self.vcd_path is not None:
            write_atomic(self.vcd_path, self.vcd_text(end_ps))
            written.append(self.vcd_path)
        return written

    def lanes(self) -> dict[str, list[SliceRecord]]:
        """Slices by track name, each track free of overlaps (interval partitioning: a slice
        goes to the first lane of its track that is free when it starts)."""
        by_track: dict[str, list[SliceRecord]] = defaultdict(list)
        for record in self.slices:
            path, track = record[0], record[1]
            by_track[path if track is None else f"{path}.{track}"].append(record)
        out: dict[str, list[SliceRecord]] = {}
        for base, records in by_track.items():
            lane_end: list[int] = []
            for record in sorted(records, key=lambda r: (r[3], r[4], r[2])):
                start, end = record[3], record[4]
                lane = next((i for i, e in enumerate(lane_end) if e <= start), len(lane_end))
                if lane == len(lane_end):
                    lane_end.append(end)
                else:
                    lane_end[lane] = end
                out.setdefault(base if lane == 0 else f"{base}#{lane + 1}", []).append(record)
        return out

    def chrome_trace(self) -> dict[str, Any]:
        """The trace as a Chrome/Perfetto JSON object (`traceEvents`)."""
        tracks = self.lanes()
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "desim"}}]
        slices = []
        for tid, name in enumerate(sorted(tracks), start=1):
            events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid,
                           "args": {"name": name}})
            events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid,
                           "args": {"sort_index": tid}})
            for _path, _track, label, start, end, args in tracks[name]:
                ts, dur = _us_span(start, end)
                event = {"name": label, "ph": "X", "pid": 0, "tid": tid, "ts": ts, "dur": dur}
                if args:
                    event["args"] = args
                slices.append(event)
        slices.sort(key=lambda e: (e["ts"], e["tid"]))
        events.extend(slices)
        levels = {m.path: _level_name(m) for m in self.sim.modules() if m.path in self.depths}
        for path in sorted(self.depths):
            previous, name = None, levels[path]
            for t, depth in _last_per_time(self.depths[path]):
                if depth != previous:
                    events.append({"name": f"{path}.{name}", "ph": "C", "pid": 0,
                                   "ts": t / PS_PER_US, "args": {name: depth}})
                    previous = depth
        return {"traceEvents": events, "displayTimeUnit": "ns",
                "otherData": {"generator": "desim", "source_time_unit": "ps"}}

    def chrome_trace_text(self) -> str:
        """The trace as `chrome_trace_text` writes it, one event a line."""
        return chrome_trace_text(self.chrome_trace())

    def vcd_text(self, end_ps: int) -> str:
        """`busy` per module (high while any slice is open; none for a container that did
        no work of its own), `depth` per FIFO; 1 ps units; the probed modules alone."""
        busy_edges: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for path, _track, _name, start, end, _args in self.slices:
            busy_edges[path] += [(start, 1), (end, -1)]
        buffer = io.StringIO()
        changes: list[tuple[int, int, Any, int]] = []
        with VCDWriter(buffer, timescale="1 ps", date="simulated", version="desim") as writer:
            for order, module in enumerate(self.sim.modules()):
                scope = module.path.replace(" ", "_")
                if module.tracer is None:
                    continue  # no probe names it (`Simulator.enable_tracing`'s `modules`)
                if isinstance(module, Fifo | Pool):
                    var = writer.register_var(scope, _level_name(module), "integer", 32, init=0)
                    points = _last_per_time(self.depths.get(module.path, []))
                elif module.children and module.path not in busy_edges:
                    continue  # a container that does no work of its own: no wire stuck at 0
                else:               # (stats.json gives it no utilization either)
                    var = writer.register_var(scope, "busy", "wire", 1, init=0)
                    points = _levels(busy_edges.get(module.path, []))
                previous = 0
                for t, value in points:
                    if value != previous:
                        changes.append((t, order, var, value))
                        previous = value
            changes.sort(key=lambda c: (c[0], c[1]))
            for t, _order, var, value in changes:
                writer.change(var, t, value)
            writer.close(max(end_ps, changes[-1][0] if changes else 0))
        return buffer.getvalue()


def chrome_trace_text(trace: dict[str, Any]) -> str:
    """A Chrome/Perfetto trace as JSON text, one event a line: compact (a large trace is
    most of a results folder), yet diffable."""
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in trace["traceEvents"])
    rest = json.dumps({k: v for k, v in trace.items() if k != "traceEvents"})[1:-1]
    return f'{{"traceEvents":[\n{lines}\n],{rest}}}\n'


def _us_span(start_ps: int, end_ps: int) -> tuple[float, float]:
    """(ts, dur) in microseconds with ts + dur <= end exactly, so that back-to-back slices
    never overlap by a rounding error."""
    ts, end = start_ps / PS_PER_US, end_ps / PS_PER_US
    dur = end - ts
    while ts + dur > end:
        dur = math.nextafter(dur, 0.0)
    return ts, dur


def _last_per_time(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep the last value at each time (several changes in one instant show as one)."""
    out: list[tuple[int, int]] = []
    for t, value in points:
        if out and out[-1][0] == t:
            out[-1] = (t, value)
        else:
            out.append((t, value))
    return out


def _levels(edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(time, +1/-1) edges of possibly overlapping slices -> (time, 0/1) busy levels."""
    out: list[tuple[int, int]] = []
    level = 0
    for t, delta in sorted(edges):
        level += delta
        point = (t, 1 if level > 0 else 0)
        if out and out[-1][0] == t:
            out[-1] = point
        else:
            out.append(point)
    return out


def _level_name(module: Module) -> str:
    """The name of a module's level in the trace and the waveform: a FIFO's `depth`, a
    pool's `in_use`."""
    return "in_use" if isinstance(module, Pool) else "depth"
