"""Systolic mode (arch/systolic.py) and the SCALE-Sim topology reader (mappings/scalesim.py).

Expected cycles are SCALE-Sim v3's closed form, worked by hand: a layer takes
folds * per_fold - 1 cycles, with (rows R, cols C of the array; M output pixels, N filters,
K = R*S*C reduction) OS: ceil(M/R)*ceil(N/C) folds of K + R + C - 2; WS: ceil(K/R)*ceil(N/C)
folds of M + 2R + C - 2; IS: ceil(K/R)*ceil(M/C) folds of N + 2R + C - 2. The four layers of
`TINY` were run through scalesim 3.0.0 on a 4x4 array (CALC mode); its "Total Cycles" are
the numbers below, which the formula reproduces exactly. No dependency on scalesim here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arch.systolic import (
    SystolicConfig,
    folds_and_fold_cycles,
    gemm_cycles,
    layer_cycles,
)
from desim.errors import ConfigError
from desim.events import apportion
from desim.experiment import load_experiment
from desim.runner import run
from mappings.counting import BP, FF, WG
from mappings.pruning import PruningSpec
from mappings.scalesim import gemm_view, read_topology, read_topology_rows
from mappings.workload import WorkloadSpec, capture_workload

ROOT = Path(__file__).resolve().parents[1]

TINY = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, \
Num Filter, Strides,
a, 2, 2, 2, 2, 2, 4, 1,
b, 2, 2, 1, 1, 8, 4, 1,
c, 5, 5, 3, 3, 3, 6, 1,
d, 9, 9, 3, 3, 5, 7, 2,
"""
# scalesim 3.0.0, 4x4 array, COMPUTE_REPORT.csv "Total Cycles" of layers a, b, c, d.
SCALESIM_4X4 = {"os": [13, 13, 197, 407], "ws": [21, 27, 265, 623], "is": [27, 27, 335, 815]}


def test_os_4x4_by_hand() -> None:
    # Sr = 4 output pixels, Sc = 4 filters, T = 8: one fold of T + R + C - 2 = 14 demand
    # rows; SCALE-Sim reports the last row's index: 13.
    assert folds_and_fold_cycles(4, 4, "os", 4, 4, 8) == (1, 14)
    assert gemm_cycles(4, 4, "os", m=4, n=4, k=8) == 13
    # Sr = 9, Sc = 6, T = 27: 3 x 2 folds of 33 rows: 197.
    assert gemm_cycles(4, 4, "os", m=9, n=6, k=27) == 3 * 2 * 33 - 1


def test_ws_and_is_by_hand() -> None:
    # WS: K = 8 over 4 rows (2 folds) x N = 4 (1 fold), each M + 2R + C - 2 = 4 + 8 + 4 - 2.
    assert gemm_cycles(4, 4, "ws", m=4, n=4, k=8) == 2 * 14 - 1
    # IS: K = 27 (7 row folds) x M = 9 (3 col folds), each N + 2R + C - 2 = 6 + 10 = 16.
    assert gemm_cycles(4, 4, "is", m=9, n=6, k=27) == 21 * 16 - 1
    # A non-square array: WS fold of M + 2*rows + cols - 2.
    assert folds_and_fold_cycles(8, 2, "ws", 10, 3, 9) == (2 * 2, 10 + 16 + 2 - 2)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_topology_layers_match_scalesim(tmp_path: Path, dataflow: str) -> None:
    topo = tmp_path / "tiny.csv"
    topo.write_text(TINY)
    layers = read_topology(topo)
    cfg = SystolicConfig(rows=4, cols=4, dataflow=dataflow)
    views = [gemm_view(layer, FF)[:3] for layer in layers]
    got = [gemm_cycles(4, 4, dataflow, *view) for view in views]
    assert got == SCALESIM_4X4[dataflow]
    # a layer's cycles on the config: its GEMM's, once per group, the groups in turn
    assert [layer_cycles(cfg, *view) for view in views] == got
    assert [layer_cycles(cfg, *view, groups=3) for view in views] == [3 * c for c in got]


def test_reader_shapes_and_strided_ceil(tmp_path: Path) -> None:
    topo = tmp_path / "t.csv"
    topo.write_text(TINY)
    d = read_topology(topo)[3]  # 9x9, 3x3, stride 2: SCALE-Sim's ceil((9-3+2)/2) = 4
    assert tuple(d.dy_nz.shape) == (1, 7, 4, 4)
    assert tuple(d.x_nz.shape) == (1, 5, 9, 9) and d.stride == 2 and d.padding == 0
    assert d.macs == 4 * 4 * 3 * 3 * 5 * 7
    # GEMM views of the three phases (M, N, K, groups).
    assert gemm_view(d, FF) == (16, 7, 45, 1)
    assert gemm_view(d, BP) == (81, 5, 63, 1)
    assert gemm_view(d, WG) == (45, 7, 16, 1)
    # A ceil that floors differ on: 10x10, 3x3, stride 2 -> SCALE-Sim 5, input grown to 11.
    topo.write_text(TINY.splitlines()[0] + "\ne, 10, 10, 3, 3, 1, 1, 2,\n")
    e = read_topology(topo)[0]
    assert tuple(e.dy_nz.shape)[2:] == (5, 5) and tuple(e.x_nz.shape)[2:] == (11, 11)


def test_a_row_without_its_trailing_comma_reads_the_same(tmp_path: Path) -> None:
    """SCALE-Sim's rows end with a comma; a hand-written row often does not. Both are the
    same eight fields (the last one, the stride, not lost or merged)."""
    topo = tmp_path / "t.csv"
    topo.write_text(TINY.splitlines()[0] + "\nd, 9, 9, 3, 3, 5, 7, 2\ne, 10, 10, 3, 3, 1, 1, 2,\n")
    assert read_topology_rows(topo) == [("d", 9, 9, 3, 3, 5, 7, 2), ("e", 10, 10, 3, 3, 1, 1, 2)]
    assert read_topology(topo)[0].stride == 2


def test_reader_errors(tmp_path: Path) -> None:
    topo = tmp_path / "bad.csv"
    topo.write_text(TINY.splitlines()[0] + "\nx, 2, 2, 3,\n")
    with pytest.raises(ConfigError, match="expected 8 fields"):
        read_topology(topo)
    with pytest.raises(ConfigError, match="not found"):
        read_topology(tmp_path / "missing.csv")


def test_workload_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        WorkloadSpec()
    with pytest.raises(ValueError, match="exactly one"):
        WorkloadSpec(model="lenet5", scalesim_topology="x.csv")


def test_apportion_is_exact() -> None:
    """Largest remainders: 100 x (3, 1, 0, 2) / 6 = 50, 16.67, 0, 33.33 floors to 99, and
    the one cycle short goes to the largest remainder (16.67); all-zero weights share
    equally, the first ones taking what does not divide."""
    assert apportion([3, 1, 0, 2], 100).tolist() == [50, 17, 0, 33]
    assert apportion([0, 0], 5).tolist() == [3, 2]
    assert apportion([], 7).tolist() == []


def test_pipeline_runs_systolic_mode(tmp_path: Path) -> None:
    """The whole pipeline on a SCALE-Sim topology: the PE array is busy exactly SCALE-Sim's
    cycles, and a layer takes at least that long (DRAM, buffer and NoC around it)."""
    topo = tmp_path / "tiny.csv"
    topo.write_text(TINY)
    exp = load_experiment(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml",
                          [f"workload.scalesim_topology={topo}"])
    arch = exp.archs["os"]
    arch = arch.model_copy(update={"pe_cluster": arch.pe_cluster.model_copy(
        update={"systolic": SystolicConfig(rows=4, cols=4, dataflow="os"), "pes": 16})})
    exp.archs["os"] = exp.archs["ws"] = arch
    workload = capture_workload(exp.spec.workload, PruningSpec(method="dense"))
    assert len(workload.layers) == 4
    results = run(exp, capture=lambda spec, pruning: workload)
    layers = results["os"].layers
    assert list(layers["phase"]) == ["FF"] * 4  # inference: FF only
    assert all(c >= s for c, s in zip(layers["cycles"], SCALESIM_4X4["os"], strict=True))
    busy_ps = results["os"].stats["modules"]["os.pe_array"]["busy_ps"]
    assert busy_ps == sum(SCALESIM_4X4["os"]) * results["os"].period_ps


def test_the_mapper_plans_a_layer_at_the_arrays_rate(tmp_path: Path) -> None:
    """The mapper ranks a systolic layer's plans by the array's closed-form cycles, shared
    out by the tiles' MACs (what the replay takes), not by the busiest of 1,024 PEs: ResNet-18's
    classifier (512 -> 1000, one image) on the 32 x 32 output-stationary array had been
    planned one output channel a tile (every plan at 512 cycles a channel on one PE, its
    MACs a pixel's), 1,000 tiles of 18 cycles that DRAM's latency held to 38,291 cycles, 2.08x
    its 18,367 (= 32 x 1 folds of 512 + 32 + 32 - 2 = 574, less 1). It now takes within 1%
    of them."""
    topo = tmp_path / "fc.csv"
    topo.write_text(TINY.splitlines()[0] + "\nfc, 1, 1, 1, 1, 512, 1000, 1,\n")
    exp = load_experiment(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml",
                          [f"workload.scalesim_topology={topo}"])
    compute = layer_cycles(exp.archs["os"].pe_cluster.systolic, 1, 1000, 512)
    assert compute == 32 * (512 + 32 + 32 - 2) - 1 == 18_367
    results = run(exp)
    os_run = results["os"]
    assert os_run.stats["modules"]["os.pe_array"]["busy_ps"] == compute * os_run.period_ps
    assert compute < int(os_run.layers["cycles"].sum()) < 1.01 * compute


def test_a_padded_layer_is_planned_at_the_rate_its_tiles_share_the_array_by(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer-phase's plans are ranked at its array cycles over its nominal MACs, the MACs
    its tiles share those cycles by (`apportion`): over its index space, padding pairs
    included, a 3x3 convolution of ResNet-18's at 8x8 had been planned at 0.44 to 0.92 of
    the time its tiles then took (the review of f6a0a7a)."""
    import yaml

    import mappings.mapper as mapper
    import mappings.planner as planner

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "padded", "baseline": "s",
        "workload": {"model": "resnet18", "model_args": {"cifar": True}, "num_classes": 10,
                     "batch": 2, "input_shape": [3, 8, 8], "data": "random", "seed": 0},
        "runs": [{"name": "s", "arch": str(ROOT / "configs" / "arch" / "dense.yaml"),
                  "arch_set": ["pe_cluster.systolic={rows: 32, cols: 32, dataflow: ws}"]}]}))
    rates: list[float] = []
    checked: list[float] = []
    replace, tile_phase = planner.replace, planner.tile_phase

    def recorded(what, **changes):  # (planner replaces layers' fields too)
        if "systolic_cycles_per_mac" in changes:
            rates.append(changes["systolic_cycles_per_mac"])
        return replace(what, **changes)

    def planned(layer, layer_index, phase, hw, *args, **kwargs):
        table, totals = tile_phase(layer, layer_index, phase, hw, *args, **kwargs)
        if len(table):
            array = int(table["compute_cycles"].sum())
            assert rates[-1] * int(table["macs"].sum()) == pytest.approx(array, rel=1e-9)
            checked.append(int(table["macs"].sum()) / layer.macs)
        return table, totals

    monkeypatch.setattr(planner, "replace", recorded)
    monkeypatch.setattr(mapper, "tile_phase", planned)
    run(load_experiment(path))
    assert len(checked) > 60 and min(checked) < 0.5  # (re-mapped under other budgets too)


def test_an_array_that_is_not_the_pes_is_refused() -> None:
    """The array stands for the PEs: 32 x 16 MAC units against 1 x 1,024 PEs is refused at
    elaboration, naming the key and both counts."""
    from desim.elaborate import elaborate

    exp = load_experiment(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml",
                          ["arch.os.pe_cluster.systolic.cols=16"])
    with pytest.raises(ConfigError, match=r"32 x 16 array is 512 MAC units.*= 1,024") as err:
        elaborate(exp)
    assert err.value.key == "pe_cluster.systolic"


def test_a_systolic_array_that_skips_zeros_is_refused() -> None:
    """SCALE-Sim's cycles are the dense GEMM's: skipping zeros would save energy and no time."""
    with pytest.raises(ConfigError, match=r"computes every MAC.*skip_zero_weights"):
        load_experiment(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml",
                        ["arch.os.sparsity.skip_zero_weights=true"])


@pytest.mark.parametrize("partition", ["auto", "reduction", "[channels, rows]"])
def test_a_systolic_array_dealt_by_rows_is_refused(partition) -> None:
    """SCALE-Sim's cycles do not depend on what the clusters are dealt: a partition by rows
    or by reduction (or a choice) would move the NoC's bytes alone, so it is refused before
    simulating."""
    with pytest.raises(ConfigError, match=r"mapping.partition: .* would change the NoC"):
        load_experiment(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml",
                        [f"arch.os.mapping.partition={partition}"])


def test_config_json_records_the_topology_csv_bytes(tmp_path):
    """config.json gave a SCALE-Sim topology's path alone: an edited CSV gave other numbers
    under the same config. Its sha256 is recorded now, as a model file's is."""
    import hashlib

    from desim.experiment import load_experiment
    from desim.resolved import resolved_config

    root = Path(__file__).resolve().parents[1]
    csv = tmp_path / "topology.csv"
    csv.write_bytes((root / "configs" / "workloads" / "resnet18_scalesim.csv").read_bytes())
    experiment = load_experiment(root / "configs" / "experiments" / "scalesim_resnet18.yaml",
                                 [f"workload.scalesim_topology={csv}"])
    recorded = resolved_config(experiment)["experiment"]["workload"]
    assert recorded["scalesim_topology"] == str(csv)
    assert recorded["scalesim_topology_sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()


@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_committed_scalesim_figures_are_its_closed_form(dataflow: str) -> None:
    """benchmarks/scalesim_reference/: SCALE-Sim's cycles for ResNet-18 on 32 x 32, which
    scalesim_compare.py reads by default, are the closed form on every layer (a figure copied
    wrong would show here, not as a difference blamed on desim)."""
    import csv

    root = Path(__file__).resolve().parents[1]
    topology = root / "configs" / "workloads" / "resnet18_scalesim.csv"
    path = root / "benchmarks" / "scalesim_reference" / f"resnet18_scalesim_32x32_{dataflow}.csv"
    with path.open() as f:
        committed = {r["Layer"]: int(r["Total Cycles"]) for r in csv.DictReader(f)}
    spec = WorkloadSpec(scalesim_topology=str(topology), batch=1, inference=True)
    layers = capture_workload(spec, PruningSpec(method="dense")).layers
    cfg = SystolicConfig(rows=32, cols=32, dataflow=dataflow)
    assert committed == {layer.name: layer_cycles(cfg, *gemm_view(layer, FF))
                         for layer in layers}


def test_scalesim_compare_reads_the_simulated_array_busy_time(capsys) -> None:
    """benchmarks/scalesim_compare.py's "desim" column is the PE array's busy time in the
    simulation, layer by layer (adding up to stats.json's), checked against the closed form;
    SCALE-Sim's column comes from the committed figures, with no SCALE-Sim installed."""
    from benchmarks.scalesim_compare import main, run_desim

    root = Path(__file__).resolve().parents[1]
    main(["--layers", "layer2.0.downsample,fc"])
    out = capsys.readouterr().out
    assert "SCALE-Sim's figures from benchmarks/scalesim_reference/resnet18_scalesim_32x32_os" \
        in out
    assert "fc                          18,367      18,367    0.000" in out
    assert "closed form on every layer" in out
    topology = root / "configs" / "workloads" / "resnet18_scalesim.csv"
    desim = run_desim(topology, 32, 32, "ws")
    assert desim.busy == desim.closed_form and sum(desim.busy) == desim.array_total


def test_a_systolic_designs_estimate_counts_its_vector_tiles_and_planned_tiles() -> None:
    """In systolic mode the estimate takes a planned tile's own cycles (a neighbour of the
    layer-phase being planned: its BP's last tiles, timed at the WG's rate before), the
    tiles being planned at their layer-phase's rate, and a vector tile's operations over
    the lanes (counted as free before)."""
    import numpy as np

    from desim.events import empty_table
    from mappings.pipeline import compute_cycles
    from mappings.target import HardwareView

    table = empty_table(3)
    table["compute_cycles"] = [0, 40, 0]
    table["macs"] = [0, 4_000, 3_000]
    table["vector_ops"] = [640, 0, 0]
    hw = HardwareView(clusters=1, pes_per_cluster=1024, buffer_bytes=1 << 20,
                      element_bytes=1, vector_lanes=64, systolic=lambda m, n, k, g: 0,
                      systolic_cycles_per_mac=0.005)
    assert compute_cycles(table, hw).tolist() == [10, 40, 15]
    assert np.array_equal(compute_cycles(table, HardwareView(
        clusters=1, pes_per_cluster=1024, buffer_bytes=1 << 20, element_bytes=1,
        vector_lanes=64, systolic=lambda m, n, k, g: 0)), [10, 40, 0])
