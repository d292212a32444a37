"""desim's systolic mode beside SCALE-Sim v3, layer by layer, on the same topology CSV.

    .venv/bin/python benchmarks/scalesim_compare.py [--dataflow os|ws|is] [--rows 32 --cols 32]
        [--topology configs/workloads/resnet18_scalesim.csv] [--layers conv1,fc]
        [--report COMPUTE_REPORT.csv | --scalesim [--venv /tmp/scalesim-venv]]
        [--workdir /tmp/scalesim-run]

SCALE-Sim's figures: by default those committed in benchmarks/scalesim_reference/ for this
topology, array and dataflow (ResNet-18 on 32 x 32, OS and WS: its COMPUTE_REPORT.csv "Total
Cycles" per layer, see the README there), so the comparison runs without SCALE-Sim installed;
`--report` reads another COMPUTE_REPORT.csv of an earlier run of the same layers; `--scalesim`
(or no figures committed) runs SCALE-Sim. It runs in its own virtual environment (created
here when missing, `scalesim==3.0.0` with `numpy==2.3.5`: numpy 2.4 breaks it, a `TypeError`
in its double_buffered_scratchpad_mem.py), through its Python API with
`save_disk_space=True` (its command line ignores `-s` and writes gigabytes of traces). Its
config needs the `[layout]` and `[sparsity]` sections and a layout CSV must exist, even with
custom layouts off (the wheel ships no configs, topologies or layouts). The bandwidth mode is
CALC, so DRAM never stalls the array and SCALE-Sim's "Total Cycles" is its compute time.

desim reads the same CSV (`mappings.scalesim`), runs the full pipeline on
`configs/arch/systolic_<rows>x<cols>_<dataflow>.yaml` when it exists (else that file's
array resized), and reports per layer the cycles its simulated PE array was busy on the
layer (the busy time the array's tiles booked to it: stats.json's `<run>.pe_array.busy_ps`,
layer by layer), checked against arch/systolic.py's closed form for the layer's GEMM view
(which the mapper shares out over the layer's tiles, `mappings.planner.tile_phase`), and
the layer's simulated cycles with DRAM, buffer and NoC. Printed: per layer SCALE-Sim's and
desim's compute cycles, their difference in % (target: within 2%), the simulated cycles,
and both wall times.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "benchmarks" / "scalesim_reference"  # SCALE-Sim's figures, committed
sys.path.insert(0, str(ROOT))

SCALESIM_CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 1024
FilterSramSzkB: 1024
OfmapSramSzkB: 1024
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Dataflow : {dataflow}
Bandwidth : 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

DRIVER = """
import sys, time
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
t = time.perf_counter()
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout)
s.run_scale(top_path=out)
print("SCALESIM_WALL_S", time.perf_counter() - t)
"""


def ensure_venv(venv: Path) -> Path:
    """The Python of a venv with scalesim 3.0.0 and numpy 2.3.5, created when missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import scalesim.scale_sim"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "scalesim==3.0.0",
                    "numpy==2.3.5"], check=True)
    return python


def write_topology(src: Path, dst: Path, layers: list[str] | None) -> list[str]:
    """Copy `src` to `dst`, keeping only `layers` (names) when given; the names kept."""
    lines = [line for line in src.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    if layers:
        rows = [r for r in rows if r.split(",")[0].strip() in layers]
        missing = set(layers) - {r.split(",")[0].strip() for r in rows}
        if missing:
            raise SystemExit(f"layers not in {src}: {', '.join(sorted(missing))}")
    dst.write_text("\n".join([header, *rows]) + "\n")
    return [r.split(",")[0].strip() for r in rows]


def run_scalesim(python: Path, workdir: Path, topology: Path, rows: int, cols: int,
                 dataflow: str) -> tuple[list[int], float]:
    """SCALE-Sim's per-layer "Total Cycles" and its wall time in seconds."""
    name = f"desim_{rows}x{cols}_{dataflow}"
    cfg = workdir / f"{name}.cfg"
    cfg.write_text(SCALESIM_CONFIG.format(name=name, rows=rows, cols=cols, dataflow=dataflow))
    layout = workdir / "layout.csv"  # must exist; unused with custom layouts off
    layout.write_text(topology.read_text())
    out = workdir / "out"
    t = time.perf_counter()
    proc = subprocess.run([str(python), "-c", DRIVER, str(cfg), str(topology), str(layout),
                           str(out)], capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"SCALE-Sim failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return read_report(out / name / "COMPUTE_REPORT.csv"), wall


def read_report(path: Path) -> list[int]:
    """The "Total Cycles" column of a SCALE-Sim COMPUTE_REPORT.csv."""
    with path.open() as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f)]
    col = rows[0].index("Total Cycles")
    return [int(float(r[col])) for r in rows[1:] if len(r) > col and r[col]]


class DesimLayers(NamedTuple):
    busy: list[int]         # the PE array's simulated busy cycles, per layer
    closed_form: list[int]  # arch.systolic.layer_cycles of the layer's GEMM view
    simulated: list[int]    # the layer's share of the run's simulated time (layers.csv cycles)
    array_total: int        # the PE array's busy cycles over the run (stats.json)
    wall_s: float


def run_desim(topology: Path, rows: int, cols: int, dataflow: str) -> DesimLayers:
    """desim's full simulation of the topology: per layer, the cycles its PE array was busy
    (the busy time the array's tiles booked to the layer, `Simulator.booked`: what `desim run`
    sums into stats.json's `<run>.pe_array.busy_ps`), the closed form the mapper shares out
    over the layer's tiles (a cross-check), and the layer's simulated cycles; the array's
    busy cycles over the whole run, and the wall time."""
    import desim.runner
    from arch.accelerator import Accelerator
    from arch.systolic import SystolicConfig, layer_cycles
    from desim.experiment import load_arch
    from mappings.counting import FF
    from mappings.pruning import PruningSpec
    from mappings.scalesim import gemm_view
    from mappings.workload import WorkloadSpec, capture_workload

    built: list[Accelerator] = []

    class Kept(Accelerator):  # the run's accelerator, kept to read its layer-phase records
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    t = time.perf_counter()
    path = ROOT / "configs" / "arch" / f"systolic_{rows}x{cols}_{dataflow}.yaml"
    if not path.exists():
        path = ROOT / "configs" / "arch" / "systolic_32x32_os.yaml"
    arch = load_arch(path)
    systolic = SystolicConfig(rows=rows, cols=cols, dataflow=dataflow)
    arch = arch.model_copy(update={"pe_cluster": arch.pe_cluster.model_copy(
        update={"systolic": systolic, "pes": rows * cols})})
    spec = WorkloadSpec(scalesim_topology=str(topology), batch=1, inference=True)
    workload = capture_workload(spec, PruningSpec(method="dense"))
    with mock.patch.object(desim.runner, "Accelerator", Kept):
        result = desim.runner.simulate("systolic", arch, workload, out=None)
    wall = time.perf_counter() - t
    (acc,) = built
    pe_path, period = acc.pes.path, result.period_ps
    busy_ps = [0] * len(workload.layers)
    for rec in acc.records:  # one a layer-phase; inference: FF only
        busy_ps[rec.layer] += rec.actions.get(pe_path, {}).get("busy_ps", 0)
    array_ps = result.stats["modules"][pe_path]["busy_ps"]
    if sum(busy_ps) != array_ps or any(b % period for b in [*busy_ps, array_ps]):
        raise SystemExit(f"the layers' PE-array busy time ({sum(busy_ps):,} ps) is not the "
                         f"array's ({array_ps:,} ps) in whole {period} ps cycles")
    closed = [layer_cycles(systolic, *gemm_view(layer, FF)) for layer in workload.layers]
    return DesimLayers([b // period for b in busy_ps], closed,
                       [int(c) for c in result.layers["cycles"]], array_ps // period, wall)


def reference_report(topology: Path, rows: int, cols: int, dataflow: str) -> Path | None:
    """The committed SCALE-Sim figures for this topology, array and dataflow, if any."""
    path = REFERENCE / f"{topology.stem}_{rows}x{cols}_{dataflow}.csv"
    return path if path.exists() else None


def read_reference(path: Path, names: list[str]) -> list[int]:
    """The "Total Cycles" of `names`, in that order, from a report with a "Layer" column (the
    committed ones, benchmarks/scalesim_reference/); else every row, in order."""
    with path.open() as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f)]
    if "Layer" not in rows[0]:
        return read_report(path)
    name, col = rows[0].index("Layer"), rows[0].index("Total Cycles")
    cycles = {r[name]: int(float(r[col])) for r in rows[1:] if len(r) > col and r[col]}
    missing = [n for n in names if n not in cycles]
    if missing:
        raise SystemExit(f"{path} has no figures for {', '.join(missing)}")
    return [cycles[n] for n in names]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataflow", choices=("os", "ws", "is"), default="os")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--topology", type=Path,
                    default=ROOT / "configs" / "workloads" / "resnet18_scalesim.csv")
    ap.add_argument("--layers", help="comma-separated layer names (default: all)")
    ap.add_argument("--venv", type=Path, default=Path("/tmp/scalesim-venv"))
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--report", type=Path,
                    help="reuse this SCALE-Sim COMPUTE_REPORT.csv (default: the committed "
                         "figures in benchmarks/scalesim_reference/ for this topology, array "
                         "and dataflow, when there are some)")
    ap.add_argument("--scalesim", action="store_true",
                    help="run SCALE-Sim (installed in --venv) even where figures are committed")
    args = ap.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scalesim-run-"))
    workdir.mkdir(parents=True, exist_ok=True)
    topology = workdir / "topology.csv"
    names = write_topology(args.topology, topology,
                           args.layers.split(",") if args.layers else None)

    desim = run_desim(topology, args.rows, args.cols, args.dataflow)
    report = args.report or (None if args.scalesim else
                             reference_report(args.topology, args.rows, args.cols,
                                              args.dataflow))
    if report is not None:
        scale, scale_wall = read_reference(report, names), float("nan")
        shown = report.resolve()
        where = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else report
        source = f"SCALE-Sim's figures from {where}"
    else:
        python = ensure_venv(args.venv)
        scale, scale_wall = run_scalesim(python, workdir, topology, args.rows, args.cols,
                                         args.dataflow)
        source = "SCALE-Sim run now"
    if len(scale) != len(names):
        raise SystemExit(f"SCALE-Sim reported {len(scale)} layers, the topology has "
                         f"{len(names)}")

    print(f"{args.rows}x{args.cols} array, dataflow {args.dataflow}, {len(names)} layers "
          f"of {args.topology.name} ({source})")
    print(f"{'layer':<22}{'SCALE-Sim':>12}{'desim':>12}{'diff %':>9}{'desim sim.':>12}")
    worst = 0.0
    for name, s, d, sim in zip(names, scale, desim.busy, desim.simulated, strict=True):
        diff = 100.0 * (d - s) / s
        worst = max(worst, abs(diff))
        print(f"{name:<22}{s:>12,}{d:>12,}{diff:>9.3f}{sim:>12,}")
    total_s, total_d = sum(scale), sum(desim.busy)
    print(f"{'total':<22}{total_s:>12,}{total_d:>12,}"
          f"{100.0 * (total_d - total_s) / total_s:>9.3f}{sum(desim.simulated):>12,}")
    print(f"worst layer difference {worst:.3f}% (target 2%)")
    off = [f"{name} {b:,} vs {c:,}" for name, b, c
           in zip(names, desim.busy, desim.closed_form, strict=True) if b != c]
    print("cross-check: the simulated busy cycles are arch/systolic.py's closed form on "
          + ("every layer" if not off else f"all layers but {'; '.join(off)}")
          + f"; the array's busy cycles over the run (stats.json) {desim.array_total:,}")
    scale_time = "not run here" if report is not None else f"{scale_wall:.1f} s"
    print(f"wall time: SCALE-Sim {scale_time}, desim {desim.wall_s:.1f} s "
          f"(capture, mapping and full simulation)")
    print("'desim': the cycles the simulated PE array was busy on the layer; 'desim sim.': "
          "the layer's simulated cycles with DRAM, global buffer and NoC "
          f"({os.path.basename(str(args.topology))}, configs/arch/systolic_*.yaml)")


if __name__ == "__main__":
    main()
