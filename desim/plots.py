"""The report's plots, PNG files written atomically (a reader never sees half a plot): energy
per component and per layer, time by binding part, layer timelines, rooflines and each
processor's topology coloured by how busy it was. Drawn on matplotlib's object API (a
`Figure` of its own, no pyplot state), as the sweep's plots are.

Every plot gives a part or an energy component the same colour (`component_color`)."""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.configio import validate
from desim.errors import ConfigError
from desim.events import PHASES
from desim.results import atomic_path
from desim.results_folder import Results, graph_utilization, read_run_stats

if TYPE_CHECKING:
    import pandas as pd


PHASE_COLORS = {"FF": "#4c72b0", "BP": "#dd8452", "WG": "#55a868", "WU": "#8172b3"}
# Each energy component one colour in every plot of a report, whichever components a plot
# shows: those desim's processors report (arch/accelerator.py) the ten of matplotlib's
# tab10, in this order; any other a light tab20 colour picked by its name.
COMPONENT_COLORS = dict(zip(
    ("macs", "vector_unit", "local_buffers", "global_buffer", "noc", "dram", "selector",
     "speculator", "index_matching", "weight_generator"),
    ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
     "#bcbd22", "#17becf"), strict=True))
OTHER_COLORS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
                "#c7c7c7", "#dbdb8d", "#9edae5")


def component_color(name: str) -> str:
    """The colour of energy component `name` in every plot (deterministic, see above)."""
    return COMPONENT_COLORS.get(name) or OTHER_COLORS[zlib.crc32(name.encode()) % 10]


def part_color(part: str) -> str:
    """The colour of a processor's part (summary.json's `utilization` names): its energy
    component's, the PE array's that of its MACs, the global buffer's its own."""
    return component_color({"pe_array": "macs", "glb": "global_buffer"}.get(part, part))


def new_axes(width: float, height: float) -> tuple[Any, Any]:
    """A figure of its own (no pyplot state: plots drawn in threads or workers never share
    one) and its one set of axes; laid out tight when saved."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="tight")
    return fig, fig.add_subplot()


def wrap_titles(fig: Any, texts: list[str]) -> bool:
    """Wrap each axes' title (its text as set, `texts`, one an axes) that, as the figure was
    last drawn, runs past its left or right edge (matplotlib cuts it there) onto more lines;
    whether any was. A report of two folders of one experiment names each by its path:
    "quickstart (/tmp/out/qs): hppu, roofline of its conv and linear layer-pha" had lost
    its end. Broken at spaces, and a path longer than a line within itself."""
    wrapped = False
    for ax, text in zip(fig.axes, texts, strict=True):
        title, page = ax.title, fig.bbox
        box = title.get_window_extent()
        if not text or (box.x0 >= page.x0 and box.x1 <= page.x1):
            continue
        middle = (box.x0 + box.x1) / 2  # a title is centred: its room, its narrower side's
        room = 2 * min(middle - page.x0, page.x1 - middle)
        longest = max(map(len, title.get_text().splitlines()))
        width = max(8, min(longest - 1, int(0.95 * longest * room / box.width)))
        title.set_text(textwrap.fill(text, width, break_on_hyphens=False))
        wrapped = True
    return wrapped


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Write the figure atomically, in the format its name says (a kill mid-write leaves the
    earlier plot whole, never half a file); drawn again where a title did not fit
    (`wrap_titles`: the drawing lays it out, a title that fits costs nothing more)."""
    texts = [ax.get_title() for ax in fig.axes]
    with atomic_path(path) as tmp:
        for _ in range(5):  # (each try narrower; one does, but for a path of its own)
            fig.savefig(tmp, dpi=dpi, format=path.suffix.removeprefix(".") or "png")
            if not wrap_titles(fig, texts):
                break
    return path


def plot_energy(results: Results, path: Path) -> Path:
    """Stacked bars: each run's energy (mJ), one segment per component."""
    runs = results.summary["runs"]
    components = sorted({c for r in runs.values() for c in r["energy_by_component_j"]})
    fig, ax = new_axes(max(4.0, 1.3 * len(runs) + 2.5), 4.0)
    _stacked_bars(ax, list(runs), {
        comp: [r["energy_by_component_j"].get(comp, 0.0) * 1e3 for r in runs.values()]
        for comp in components})
    ax.set_ylabel("energy (mJ)")
    ax.set_title(f"{results.shown_name}: energy per component")
    return save_figure(fig, path)


def _stacked_bars(ax: Any, names: list[str], segments: dict[str, list[float]],
                  horizontal: bool = False, color: Callable[[str], str] = component_color
                  ) -> None:
    """One bar per name, one segment per energy component (or part) of `segments`, in its
    colour (`component_color`, or `part_color`), a legend beside."""
    base = [0.0] * len(names)
    for label, values in segments.items():
        if horizontal:
            ax.barh(range(len(names)), values, left=base, height=0.8, label=label,
                    color=color(label))
        else:
            ax.bar(names, values, bottom=base, label=label, color=color(label))
        base = [b + v for b, v in zip(base, values, strict=True)]
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def plot_time_by_busiest_part(results: Results, path: Path) -> Path | None:
    """Stacked bars: each run's time (ms), one segment per part, the time of the layer-phases
    whose busiest part it is (`time_by_busiest_part`); None when no run has the figures (a
    summary written before them)."""
    runs = {name: run for name, run in results.summary["runs"].items()
            if run.get("time_by_busiest_part")}
    if not runs:
        return None
    parts = sorted({part for run in runs.values()  # parts never the busiest: no segment
                    for part, share in run["time_by_busiest_part"].items() if share})
    fig, ax = new_axes(9.0, max(2.0, 0.5 * len(runs) + 1.2))
    _stacked_bars(ax, list(runs), {
        part: [run["time_by_busiest_part"].get(part, 0.0) * run["seconds"] * 1e3
               for run in runs.values()] for part in parts}, horizontal=True, color=part_color)
    ax.set_yticks(range(len(runs)), list(runs))
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(f"{results.shown_name}: time by each layer-phase's busiest part")
    return save_figure(fig, path)


def plot_timeline(results: Results, run: str, path: Path, by: str = "phase") -> Path:
    """Horizontal bars: when each layer-phase of `run` ran (cycles), coloured by its phase
    (`by="phase"`) or by the part busiest over its span (`by="busiest_part"`: where in the
    iteration each part bounds it)."""
    rows = results.layers[results.layers["run"] == run]
    names = list(dict.fromkeys(rows["layer"]))  # first appearance: forward order
    y = {name: i for i, name in enumerate(names)}
    fig, ax = new_axes(9.0, max(3.0, 0.16 * len(names) + 1.2))
    colors = PHASE_COLORS if by == "phase" else {
        part: part_color(part) for part in sorted(set(rows[by].dropna()) - {""})}
    for label, color in colors.items():
        part = rows[rows[by] == label]
        if len(part):
            ax.barh([y[n] for n in part["layer"]], part["end_cycle"] - part["start_cycle"],
                    left=part["start_cycle"], height=0.8, color=color, label=label)
    ax.set_yticks(range(len(names)), names, fontsize=max(4, min(8, 400 // max(len(names), 1))))
    ax.invert_yaxis()
    ax.set_xlabel("cycle")
    ax.set_title(f"{results.shown_name}: {run}, layer timeline"
                 + (", coloured by the busiest part" if by != "phase" else ""))
    # beside the axes: the last layers, at the bottom, end at the right, under a legend there
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)


def roofline_points(layers: pd.DataFrame, run: str) -> tuple[pd.DataFrame, pd.Series,
                                                              pd.Series]:
    """`run`'s conv and linear layer-phases that move DRAM bytes and do MACs (layers.csv's
    rows), their processed MACs per DRAM byte and their processed MACs a cycle over their
    span."""
    rows = layers[(layers["run"] == run) & (layers["unit"] == "pe_array")
                  & (layers["dram_bytes"] > 0) & (layers["processed_macs"] > 0)]
    span = (rows["end_cycle"] - rows["start_cycle"]).clip(lower=1)
    return rows, rows["processed_macs"] / rows["dram_bytes"], rows["processed_macs"] / span


def plot_roofline(results: Results, run: str, described: dict[str, Any], path: Path) -> Path:
    """`run`'s conv and linear layer-phases on the roofline of its processor (`described`:
    `desim.elaborate.describe`'s MACs a cycle and ridge, MACs per DRAM byte); layer-phases
    that move no DRAM byte or do no MAC have no intensity and are left out."""
    import numpy as np

    rows, intensity, rate = roofline_points(results.layers, run)
    peak, ridge = described["macs_per_cycle"], described["macs_per_dram_byte"]
    bandwidth = peak / ridge  # DRAM's bytes a cycle
    fig, ax = new_axes(7.0, 4.5)
    low = min([*intensity, ridge]) / 4
    high = max([*intensity, ridge]) * 4
    xs = np.geomspace(low, high, 200)
    ax.plot(xs, np.minimum(peak, bandwidth * xs), color="black", linewidth=1,
            label=f"roofs: {peak:,} MACs a cycle, DRAM {bandwidth:.3g} B a cycle")
    for part in sorted(set(rows["busiest_part"].dropna()) - {""}):
        mine = rows["busiest_part"] == part
        ax.scatter(intensity[mine], rate[mine], s=14, color=part_color(part), label=part)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("processed MACs per DRAM byte")
    ax.set_ylabel("processed MACs a cycle, over its span")
    ax.set_title(f"{results.shown_name}: {run}, roofline of its conv and linear layer-phases")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_layer_energy(results: Results, run: str, path: Path) -> Path:
    """Horizontal stacked bars: each layer's energy (uJ, its phases together) of `run`, one
    segment per component, layers in forward order (from energy.csv). The x-label names the
    phases summed, those the run's rows have: FF alone for an inference, FF + BP + WG + WU
    with a weight update (it had read "FF + BP + WG" whatever the run)."""
    rows = results.energy[results.energy["run"] == run]
    phases = [phase for phase in PHASES if phase in set(rows["phase"])]
    table = rows.pivot_table(index="layer", columns="component", values="energy_j",
                             aggfunc="sum", fill_value=0.0, sort=False) * 1e6
    names = list(dict.fromkeys(results.layers.loc[results.layers["run"] == run, "layer"]))
    table = table.reindex([n for n in names if n in table.index])
    fig, ax = new_axes(9.0, max(3.0, 0.16 * len(table) + 1.2))
    _stacked_bars(ax, list(table.index),
                  {comp: table[comp].tolist() for comp in sorted(table.columns)},
                  horizontal=True)
    ax.set_yticks(range(len(table)), list(table.index),
                  fontsize=max(4, min(8, 400 // max(len(table), 1))))
    ax.invert_yaxis()
    ax.set_xlabel(f"energy (uJ), {' + '.join(phases)}")
    ax.set_title(f"{results.shown_name}: {run}, energy per layer")
    return save_figure(fig, path)


def plot_topology(results: Results, run: str, path: Path) -> Path | str:
    """Run `run`'s processor, its links and nodes coloured by how busy they were (the
    picture of `desim topology --stats`), or why it cannot be drawn: the folder lacks the
    run's resolved design (config.json) or its statistics (stats.json), or this desim no
    longer reads its design (written by an older one: a key since renamed, a value since
    refused, such as a clock under 1 MHz). The rest of the report does not need it."""
    design = results.config.get("architectures", {}).get(run)
    if design is None:
        return "config.json holds no resolved design for it"
    if not (results.path / "stats.json").exists():
        return "the folder has no stats.json"
    from arch.accelerator import build_graph
    from arch.config import ArchConfig
    from arch.draw import draw_topology

    try:
        cfg = validate(ArchConfig, design, results.path / "config.json",
                       f"architectures.{run}")
        graph = build_graph(cfg)
        modules = read_run_stats(results.path, run)["modules"]
    except ConfigError as err:
        return str(err)
    return draw_topology(graph, path, graph_utilization(graph, modules, run))
