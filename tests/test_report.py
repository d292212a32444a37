"""`desim report`: claims checked against results, Markdown and HTML with the same content,
plots beside the report, exit codes of the command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from small_experiments import as_older_desims, lenet300_experiment
from typer.testing import CliRunner

from desim.claims import ClaimCheck, check_claim, resolve
from desim.document import Para, to_html
from desim.errors import ConfigError
from desim.experiment import CLAIM_METRICS, Claim, load_experiment
from desim.gains import energy_gains
from desim.metrics import DERIVED_RUN, on_chip_energy_j
from desim.plots import OTHER_COLORS, _stacked_bars, component_color
from desim.report import _claim_rows, _tally, arch_differences, build_report, register
from desim.results import report_files
from desim.results_folder import Results
from desim.runner import run_file

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "experiments" / "quickstart.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
# One claim reproduced, one known gap, one surprise (a paper figure nothing could reach).
CLAIMS = ("claims=["
          "{metric: comparison.hppu.speedup, paper: 2.0, tolerance: 100, source: test},"
          "{metric: comparison.hppu.on_chip_energy_ratio, paper: 1000, tolerance: 1,"
          " expect: outside, source: test, note: known gap for the test},"
          "{metric: runs.hppu.energy_j, over: runs.dense.energy_j, paper: 1000, tolerance: 1,"
          " source: test}]")


def test_report_on_a_quickstart_result(tmp_path):
    """One quickstart run (batch 2, to stay fast) with three claims added, reported four
    ways: the Markdown, the HTML, the command's exit codes, and as an older folder whose
    config.json has no claims."""
    results = tmp_path / "quickstart"
    run_file(QUICKSTART, results, ["workload.batch=2", CLAIMS,
                                   "notes=[an assumption the reader must see]"])
    md, html = check_markdown(results, tmp_path / "rep" / "report.md")
    check_claim_metrics_are_the_summarys(results)
    check_overrides_are_reported(results, md)
    check_same_content(md, html)
    check_exit_codes(results, tmp_path / "cli")
    check_folder_without_claims(results, tmp_path / "old")
    check_damaged_folders(results, tmp_path / "damaged")
    check_two_folders_of_one_experiment(results, tmp_path / "what_if")


def check_two_folders_of_one_experiment(results_dir: Path, out: Path) -> None:
    """A what-if beside the run before it: the two are told apart by their folders, in the
    claims table, the headings and the plots' titles; one folder alone is named as before."""
    shutil.copytree(results_dir, out / "after")
    md, _, both = build_report([results_dir, out / "after"], out / "report.md")
    text = md.read_text()
    labels = [f"quickstart ({results_dir})", f"quickstart ({out / 'after'})"]
    assert [r.shown_name for r in both] == labels
    for label in labels:
        assert f"## Experiment `{label}`" in text
        assert text.count(f"| {label} | ") == 3  # its three claims
    _, _, (alone,) = build_report([results_dir], out / "alone.md")
    assert alone.shown_name == "quickstart"


def check_overrides_are_reported(results_dir: Path, md: Path) -> None:
    """config.json records the --set items the run applied; the report lists them and says,
    beside each verdict the file does not expect, that the run was not the file's."""
    config = json.loads((results_dir / "config.json").read_text())
    assert config["overrides"] == ["workload.batch=2", CLAIMS,
                                   "notes=[an assumption the reader must see]"]
    text = md.read_text()
    assert ("Run with --set: `workload.batch=2`, `claims=[{metric: comparison.hppu.speedup"
            in text)
    assert "(over the experiment file: its description, notes and claims below are as the " \
        "file gives them)." in text
    assert text.count("| OUTSIDE (unexpected); the run deviated from its file (--set) |") == 2
    assert "| within |" in text  # an expected verdict as it is


def check_claim_metrics_are_the_summarys(results_dir: Path) -> None:
    """What an experiment file's claims may name (checked when it is read) is what a
    summary.json holds and `desim report` derives, no more and no less."""
    summary = json.loads((results_dir / "summary.json").read_text())
    # not numbers: the architecture's name, its node, the names of the busiest parts
    stored = set(summary["runs"]["hppu"]) - {"arch", "technology", "busiest_parts"}
    assert set(CLAIM_METRICS["runs"]) == stored | set(DERIVED_RUN)
    assert set(CLAIM_METRICS["comparison"]) == set(summary["comparison"]["hppu"]) | {
        "on_chip_energy_ratio"}
    with pytest.raises(ConfigError, match="no comparison metric 'speedupp'; expected one of"):
        load_experiment(QUICKSTART, ["claims=[{metric: comparison.hppu.speedupp, paper: 1,"
                                     " tolerance: 1}]"])


def check_markdown(results_dir: Path, out: Path) -> tuple[Path, Path]:
    md, html, (results,) = build_report([results_dir], out)
    text = md.read_text()
    assert "| experiment | claim | paper | desim | accepted range | verdict |" in text
    assert "| comparison.hppu.speedup | 2 |" in text
    assert "| within |" in text and "outside (known gap)" in text
    assert "OUTSIDE (unexpected)" in text
    assert "not where the experiment file expects them" in text
    assert "an assumption the reader must see" in text
    assert "| component (mJ) | dense | hppu |" in text and "| dram |" in text
    assert "| price (pJ) | dense | hppu |" in text
    runs = results.summary["runs"]
    share = 100 * runs["hppu"]["units"]["vector_unit"]["cycles"] / runs["hppu"]["cycles"]
    assert 10 < share < 60  # batch norms and adds: a share weight pruning does not shrink
    assert re.search(rf"\| hppu \| hppu_like \|.* \| {share:.0f} \| ", text)
    assert "| `noc_pj_per_bit_hop` | 0.2489 | 0.2489 |" in text  # 0.4 at 45 nm x 28/45
    assert "| `selector_pj_per_entry` | - | 0.01867 |" in text  # only hppu_like has one
    # the processors compared, elaborated from config.json: 16 x 16 PEs x 4 MACs each
    assert "| processor | dense | hppu |" in text and "| MACs / cycle | 1,024 | 1,024 |" in text
    assert "| DRAM peak (GB/s) | 19.21 | 19.21 |" in text  # narrower than DRAM: the port
    # the roofline's ridge: 1,024 MACs a cycle at 500 MHz over 19.2 GB/s
    assert "| MACs / DRAM byte (ridge) | 26.66 | 26.66 |" in text
    assert "| NoC port (GB/s) | 16 | 16 |" in text  # every operand crosses
    assert "| sparse units | - | selector |" in text and "| skips zero | - | W X dY |" in text
    assert "| dataflow | order chosen, by channels | order chosen, by channels |" in text
    # the plans the mapper chose, counted from layers.csv: both designs deal channels
    for run in ("dense", "hppu"):
        pe_array = results.layers[(results.layers["run"] == run)
                                  & (results.layers["unit"] == "pe_array")]
        stationary = pe_array["mapping"].str.contains("weight stationary").sum()
        whole = pe_array["mapping"].str.contains("whole reduction").sum()
        n = len(pe_array)
        assert (f"| {run} | {n} | {n} | 0 | 0 | {stationary} | {n - stationary} | {whole} | "
                f"{n - whole} | 0 |") in text
    # and every arch key whose value differs between the runs
    assert "| `sparsity.weight_format` | dense | line_bitmap |" in text
    assert "| `selector.levels` | - | 2 |" in text and "| `name` |" not in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    # energy per component and time by each layer-phase's busiest part; per run its
    # topology coloured by how busy each part was, its roofline, a timeline by phase and
    # one by busiest part, and the energy per layer (energy.csv)
    assert len(images) == 2 + 5 * len(results.summary["runs"])
    for name in images:
        png = md.parent / name
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert {"report_quickstart.energy.png", "report_quickstart.dense.timeline.png",
            "report_quickstart.hppu.timeline.png",
            "report_quickstart.hppu.layer_energy.png",
            "report_quickstart.hppu.topology.png",
            "report_quickstart.busiest_part.png",
            "report_quickstart.hppu.bound_timeline.png",
            "report_quickstart.dense.roofline.png"} <= set(images)
    # where hppu's gain over dense comes from: its ratios, energy by component, time by
    # binding part, each total that of the comparison
    comp = results.summary["comparison"]["hppu"]
    on_chip = on_chip_energy_j(runs["dense"]) / on_chip_energy_j(runs["hppu"])
    assert "### Where the gain comes from" in text
    assert (f"`hppu` against `dense`: energy {comp['energy_ratio']:.2f}x less, "
            f"{on_chip:.2f}x less on chip, {comp['speedup']:.2f}x faster.") in text
    assert ("| component | dense (mJ) | hppu (mJ) | shrinks | % of hppu | % of the saving | "
            "ratio if free | on chip, if free |") in text
    macs = energy_gains(runs["dense"], runs["hppu"]).loc["macs"]
    assert re.search(rf"^\| macs \| [^|]+ \| [^|]+ \| {macs['shrink']:.2f}x \| "
                     rf"{100 * macs['share_of_run']:.1f} \| ", text, re.M)
    assert re.search(r"^\| selector \| 0 \| [^|]+ \| new \| ", text, re.M)
    assert re.search(rf"^\| total \| [^|]+ \| [^|]+ \| {comp['speedup']:.2f}x \| 100.0 \| "
                     r"100.0 \| - \|$", text, re.M)   # the time table's
    assert "### Where the time went" in text
    bound = ", ".join(f"{part} {100 * share:.0f}%" for part, share in sorted(
        runs["hppu"]["time_by_busiest_part"].items(), key=lambda kv: -kv[1]) if share >= 0.005)
    assert f"; hppu: {bound}." in text
    # each run's five slowest layer-phases, the slowest first, with their busiest part
    layers = results.layers[results.layers["run"] == "hppu"]
    slowest = layers.sort_values("cycles", ascending=False, kind="stable").iloc[0]
    link = "" if pd.isna(slowest["busiest_link"]) else f" {slowest['busiest_link']}"  # NoC's
    assert "| run | layer | phase | unit | cycles | % of the run | busiest part (% of its " \
           "span) | mapping |" in text
    mapping = slowest["mapping"] if isinstance(slowest["mapping"], str) else "-"  # vector's
    assert (f"| hppu | {slowest['layer']} | {slowest['phase']} | {slowest['unit']} | "
            f"{slowest['cycles']:,} | {100 * slowest['cycles'] / runs['hppu']['cycles']:.1f} | "
            f"{slowest['busiest_part']}{link} ({100 * slowest['busiest_share']:.0f}%) | "
            f"{mapping} |") in text
    assert len(re.findall(r"^\| (dense|hppu) \| [^|]+ \| (FF|BP|WG) \| ", text, re.M)) == 10
    # what desim run removes from a results folder by report_files' patterns is all of it
    assert {p.name for p in md.parent.iterdir()} == {
        p.name for pattern in report_files() for p in md.parent.glob(pattern)}
    # a second report in the same folder keeps its own plots, and leaves the first's
    before = {name: (md.parent / name).read_bytes() for name in images}
    other, _, _ = build_report([results_dir], md.parent / "other.md")
    others = re.findall(r"!\[[^]]*\]\(([^)]+)\)", other.read_text())
    assert sorted(others) == sorted(name.replace("report_", "other_", 1) for name in images)
    assert all((md.parent / name).read_bytes() == data for name, data in before.items())
    assert not list(md.parent.glob(".*.tmp"))
    assert "### Energy by layer" in text
    assert html.suffix == ".html" and html.parent == md.parent
    return md, html


def check_same_content(md: Path, html: Path) -> None:
    page = html.read_text()
    assert page.startswith("<!doctype html>")
    cells = [c.strip() for line in md.read_text().splitlines() if line.startswith("| ")
             for c in line.strip("|").split(" | ")]
    assert len(cells) > 50
    for cell in cells:
        escaped = cell.replace("\\|", "|").replace("&", "&amp;").replace("<", "&lt;")
        escaped = escaped.replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")
        assert re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped) in page, cell
    assert page.count("<img ") == md.read_text().count("![")
    assert 'class="gap"' in page and 'class="bad"' in page and 'class="ok"' in page


def check_exit_codes(results: Path, out: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    runner = CliRunner()
    ok = runner.invoke(app, ["report", str(results), "--out", str(out / "a.md")])
    assert ok.exit_code == 0, ok.output
    assert "OUTSIDE (unexpected)" in ok.output and (out / "a.html").is_file()
    strict = runner.invoke(app, ["report", str(results), "--out", str(out / "b.md"), "--check"])
    assert strict.exit_code == 1
    bad = runner.invoke(app, ["report", str(out), "--out", str(out / "c.md")])
    assert bad.exit_code == 2 and "not a results folder" in bad.output


@pytest.mark.parametrize("name", ["r.pdf", "r.html", "report"])
def test_report_out_must_be_a_markdown_file(tmp_path, name):
    """The report is Markdown (its HTML copy beside it): any other name is refused, exit 2,
    before a results folder is read or anything written."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / name)])
    assert result.exit_code == 2, result.output
    assert f"--out {tmp_path / name}: the report is Markdown" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_a_report_under_a_file_says_what_it_writes_there(tmp_path):
    """`--out afile/r.md` where afile is a file: exit 2, naming the file and the report it
    would hold (it said "a folder to write results in")."""
    from desim.results import writable_file

    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="afile: is a file, not a folder; expected a folder "
                                          "to write r.md in"):
        writable_file(tmp_path / "afile" / "r.md")


def test_report_prints_a_folder_name_as_it_is(tmp_path):
    """A folder name with brackets is not rich markup: the error names it verbatim."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    folder = tmp_path / "[bold]x"
    folder.mkdir()
    result = CliRunner().invoke(app, ["report", str(folder), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 2, result.output
    assert f"{folder}" in " ".join(result.output.split())
    assert "not a results folder" in result.output


def test_report_of_a_sweeps_folder_says_where_its_results_are(tmp_path):
    """`desim sweep --out DIR` writes no summary.json: "not a results folder" alone left
    the architect guessing where a sweep's numbers are."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    (tmp_path / "sweep.json").write_text("{}")
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 2, result.output
    assert ("this is a sweep's folder: its results are results.parquet (one row per point, "
            "run and phase)") in " ".join(result.output.split())


def check_folder_without_claims(results: Path, old: Path) -> None:
    """Results written before claims existed have none in config.json: the report says so.
    Before 2026-12-03 layers.csv named each row's run in its `arch` column, and had no
    `run` one: the report reads that too (not where the `arch` column holds other names
    than the runs': a `run` column renamed had been read as runs named as the designs)."""
    import pandas as pd

    old.mkdir()
    (old / "summary.json").write_bytes((results / "summary.json").read_bytes())
    (old / "energy.csv").write_bytes((results / "energy.csv").read_bytes())
    layers = pd.read_csv(results / "layers.csv")
    layers.drop(columns="arch").rename(columns={"run": "arch"}).to_csv(old / "layers.csv",
                                                                     index=False)
    as_older_desims(old)
    config = json.loads((results / "config.json").read_text())
    del config["experiment"]["claims"]
    del config["overrides"]  # nor the --set items (before 2026-12-04)
    (old / "config.json").write_text(json.dumps(config))
    md, _, _ = build_report([old], old / "r.md")
    assert "No claims in this experiment file." in md.read_text()
    assert "Run with --set" not in md.read_text()
    assert "r_quickstart.hppu.timeline.png" in md.read_text()
    layers.rename(columns={"run": "xrun"}).to_csv(old / "layers.csv", index=False)
    with pytest.raises(ConfigError, match="not a results folder: layers.csv lacks run$"):
        build_report([old], old / "r.md")


def check_damaged_folders(results: Path, root: Path) -> None:
    """A folder edited by hand or written by something else is bad input: the file and key
    at fault, never a KeyError from inside a table."""
    def damaged(name: str, change, config: bool = False) -> str:
        folder = root / name
        folder.mkdir(parents=True)
        for file in ("summary.json", "config.json", "layers.csv", "energy.csv"):
            (folder / file).write_bytes((results / file).read_bytes())
        target = folder / ("config.json" if name == "claim" or config else "summary.json")
        data = json.loads(target.read_text())
        change(data)
        target.write_text(json.dumps(data))
        with pytest.raises(ConfigError) as err:
            build_report([folder], folder / "r.md")
        return str(err.value)

    assert damaged("baseline", lambda s: s.pop("baseline")).endswith(
        "summary.json: baseline: Field required")
    assert "summary.json: runs.hppu.cycles: Input should be a valid integer" in damaged(
        "cycles", lambda s: s["runs"]["hppu"].update(cycles="many"))
    assert "summary.json: baseline: 'nope' and comparison must name the runs" in damaged(
        "unknown", lambda s: s.update(baseline="nope"))
    assert "config.json: experiment.claims.0.tolerance: Input should be greater" in damaged(
        "claim", lambda c: c["experiment"]["claims"][0].update(tolerance=-1))
    # a config.json of {}: its report had shown "?" for the model, batch and pruning
    assert "config.json: experiment: Field required" in damaged(
        "empty_config", lambda c: c.clear(), config=True)
    # what the tables read beyond the figures: each failed inside a table with a traceback
    assert "summary.json: runs.hppu.arch: Field required" in damaged(
        "arch", lambda s: s["runs"]["hppu"].pop("arch"))
    assert ("summary.json: runs.dense.energy_prices_pj.mac_pj: Input should be a valid number"
            in damaged("price", lambda s: s["runs"]["dense"]["energy_prices_pj"].update(
                mac_pj="cheap")))
    assert ("summary.json: runs.hppu.workload.activation_sparsity: Input should be a valid "
            "number" in damaged("sparsity", lambda s: s["runs"]["hppu"]["workload"].update(
                activation_sparsity="low")))
    assert "summary.json: comparison.hppu.speedup: Field required" in damaged(
        "speedup", lambda s: s["comparison"]["hppu"].pop("speedup"))
    assert "config.json: experiment.runs.1.pruning.sparsity: Input should be a valid" in damaged(
        "pruning", lambda c: c["experiment"]["runs"][1]["pruning"].update(sparsity="high"),
        config=True)
    assert "config.json: experiment.workload: Input should be a valid dictionary" in damaged(
        "workload", lambda c: c["experiment"].update(workload="resnet"), config=True)
    assert "config.json: overrides: Input should be a valid list (got None)" in damaged(
        "overrides", lambda c: c.update(overrides=None), config=True)
    assert "config.json: experiment.claims: Input should be a valid list (got None)" in damaged(
        "claims", lambda c: c["experiment"].update(claims=None), config=True)
    folder = root / "energy"
    folder.mkdir(parents=True)
    for file in ("summary.json", "config.json", "layers.csv"):
        (folder / file).write_bytes((results / file).read_bytes())
    with pytest.raises(ConfigError, match="no energy.csv, which desim run writes beside "
                                          "summary.json: the folder is incomplete"):
        build_report([folder], folder / "r.md")  # its "Energy by layer" had been left out
    (folder / "energy.csv").write_text("arch,layer,joules\ndense,fc,1.0\n")
    with pytest.raises(ConfigError, match="energy.csv lacks component, energy_j, phase"):
        build_report([folder], folder / "r.md")
    layers = pd.read_csv(results / "layers.csv")
    (folder / "energy.csv").write_bytes((results / "energy.csv").read_bytes())
    layers.rename(columns={"cycles": "cycl"}).to_csv(folder / "layers.csv", index=False)
    with pytest.raises(ConfigError, match="layers.csv lacks cycles$"):  # its slowest
        build_report([folder], folder / "r.md")  # layer-phases and timelines had gone


SUMMARY = {
    "baseline": "base",
    "runs": {"base": {"energy_j": 10.0, "macs": 100, "energy_by_component_j": {"dram": 6.0},
                      "workload": {"accuracy": 0.8}},
             "fast": {"energy_j": 4.0, "macs": 100, "energy_by_component_j": {"dram": 3.0},
                      "workload": {"accuracy": 0.9}}},
    "comparison": {"base": {"speedup": 1.0}, "fast": {"speedup": 2.5}},
}


def test_resolve_reads_paths_and_derived_metrics():
    assert resolve(SUMMARY, "comparison.fast.speedup") == 2.5
    assert resolve(SUMMARY, "runs.fast.on_chip_energy_j") == 1.0
    assert resolve(SUMMARY, "comparison.fast.on_chip_energy_ratio") == 4.0  # (10-6)/(4-3)
    assert resolve(SUMMARY, "runs.base.tflops_per_w") == pytest.approx(2 * 100 / 10 / 1e12)
    assert resolve(SUMMARY, "runs.fast.on_chip_tflops_per_w") == pytest.approx(2 * 100 / 1 / 1e12)
    with pytest.raises(KeyError, match="no metric"):
        resolve(SUMMARY, "comparison.fast.nonsense")


@pytest.mark.parametrize(("compare", "paper", "within"), [
    ("approx", 1.1, True), ("approx", 1.3, False), ("at_least", 1.2, True),
    ("at_least", 1.3, False), ("at_most", 1.1, True), ("at_most", 1.0, False)])
def test_claim_comparisons(compare, paper, within):
    """Accuracy ratio 0.9 / 0.8 = 1.125 against a paper figure, tolerance 0.1."""
    claim = Claim(metric="runs.fast.workload.accuracy", over="runs.base.workload.accuracy",
                  paper=paper, tolerance=0.1, compare=compare)
    check = check_claim(SUMMARY, claim)
    assert check.value == pytest.approx(1.125)
    assert check.within is within


def test_a_value_just_beyond_a_bound_does_not_read_as_the_bound():
    """hppu_vs_fine_grained's 1.2197 against 1.53 +- 0.31: at four digits it would read
    "1.22" beside the range "1.22 to 1.84" and look within; it takes a fifth. A value
    inside, or clear of the bound, keeps four."""
    def check(value: float) -> ClaimCheck:
        return ClaimCheck(Claim(metric="runs.x.cycles", paper=1.53, tolerance=0.31), value)

    assert check(1.2197).verdict.startswith("OUTSIDE") and check(1.2197).range_text == \
        "1.22 to 1.84"
    assert check(1.2197).value_text == "1.2197"
    assert check(1.8399).value_text == "1.84"  # within: as is
    assert check(1.8413).value_text == "1.841"
    assert check(1.25).value_text == "1.25"


def test_a_list_of_metrics_gives_the_mean_of_their_ratios():
    """Two ratios, 0.9 / 0.8 = 1.125 and 0.8 / 0.9 = 0.889: their mean 1.007 is within 0.05
    of 1 although the second alone is not; the report names both, each with its two figures
    as a single ratio claim shows them (it showed the ratios alone). A list without `over`
    shows the values it averages."""
    claim = Claim(metric=["runs.fast.workload.accuracy", "runs.base.workload.accuracy"],
                  over=["runs.base.workload.accuracy", "runs.fast.workload.accuracy"],
                  paper=1.0, tolerance=0.05, compare="at_least")
    check = check_claim(SUMMARY, claim)
    assert check.value == pytest.approx((0.9 / 0.8 + 0.8 / 0.9) / 2)
    assert check.within and check.value_text == "1.007 (0.9 / 0.8 = 1.125, 0.8 / 0.9 = 0.8889)"
    mean = check_claim(SUMMARY, Claim(metric=["runs.fast.workload.accuracy",
                                              "runs.base.workload.accuracy"],
                                      paper=0.85, tolerance=0.1))
    assert mean.value_text == "0.85 (0.9, 0.8)"
    assert check.metric_text == ("mean of (runs.fast.workload.accuracy / runs.base.workload."
                                 "accuracy, runs.base.workload.accuracy / runs.fast.workload."
                                 "accuracy)")
    with pytest.raises(ValueError, match="as many over"):
        Claim(metric=["runs.fast.workload.accuracy"], over=[], paper=1, tolerance=1)
    with pytest.raises(ValueError, match="both"):
        Claim(metric=["runs.fast.workload.accuracy"], over="runs.base.workload.accuracy",
              paper=1, tolerance=1)


def test_missing_metric_is_flagged_not_fatal():
    check = check_claim(SUMMARY, Claim(metric="runs.fast.workload.nothing", paper=1,
                                       tolerance=1))
    assert check.value is None and check.verdict == "MISSING" and not check.as_expected


def test_claim_naming_an_unknown_run_is_a_config_error(tmp_path):
    text = QUICKSTART.read_text().replace("../arch/", str(ROOT / "configs" / "arch") + "/")
    path = tmp_path / "exp.yaml"
    path.write_text(text + "claims: [{metric: comparison.hpu.speedup, paper: 1, tolerance: 1}]\n")
    with pytest.raises(ConfigError, match="claims"):
        load_experiment(path)


def test_tally_counts_each_claim_once():
    """Within as expected, a known gap, within though the file expects a gap, outside
    unexpectedly, missing: five claims, each in one group, the groups adding up to five."""
    def check(value: float | None, expect: str = "within") -> ClaimCheck:
        return ClaimCheck(Claim(metric="runs.x.cycles", paper=1.0, tolerance=0.1,
                                expect=expect), value)

    checks = [check(1.0), check(2.0, "outside"), check(1.0, "outside"), check(2.0),
              check(None)]
    assert _tally(checks) == ("5 claims: 1 within tolerance, 1 outside as a known gap "
                              "(explained below), **3 not where the experiment file expects "
                              "them**.")


def test_the_papers_figure_is_quoted_as_the_file_gives_it():
    """peak_efficiency's 126.04, 173.28 and 276.55 read as written, not "126", "173.3" and
    "276.6"; in the table and in the command's output alike. A whole figure drops its ".0"."""
    def check(paper: float) -> ClaimCheck:
        return ClaimCheck(Claim(metric="runs.x.cycles", paper=paper, tolerance=1.0), paper)

    assert [check(p).paper_text for p in (126.04, 173.28, 276.55, 1.596, 25.0, 0.00012)] == [
        "126.04", "173.28", "276.55", "1.596", "25", "0.00012"]
    results = Results(Path("r"), {"experiment": "e"}, {}, None, checks=[check(126.04)])
    assert _claim_rows(results)[0][2] == "126.04"


def test_html_renders_the_markdowns_inline_markup():
    """The tally's **bold**, `code` and a [link](url) become HTML, not literal asterisks;
    the rest is escaped, and nothing inside a code span is read as markup."""
    blocks = [Para("3 claims, **1 not where <expected>**; `a**b**` see [PAPERS](docs/P.md)")]
    page = to_html(blocks, "t")
    assert ("<p>3 claims, <strong>1 not where &lt;expected&gt;</strong>; <code>a**b**</code> "
            'see <a href="docs/P.md">PAPERS</a></p>') in page
    assert "**" not in page.replace("<code>a**b**</code>", "")


def test_a_component_has_one_colour_in_every_plot():
    """MACs blue and the NoC purple in a plot of dram, macs and noc and in one of macs,
    noc and selector alike (by index, the second plot's MACs took the first's DRAM colour);
    a component desim does not know gets the same light colour every time."""
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    one, two = Figure().subplots(2)
    _stacked_bars(one, ["r"], {"dram": [1.0], "macs": [2.0], "noc": [3.0]})
    _stacked_bars(two, ["r", "s"], {"macs": [1.0, 2.0], "noc": [1.0, 1.0],
                                    "selector": [2.0, 1.0], "laser": [1.0, 1.0]})
    colours = [{bars.get_label(): {to_hex(p.get_facecolor()) for p in bars.patches}
                for bars in ax.containers} for ax in (one, two)]
    assert colours[0] == {"dram": {"#8c564b"}, "macs": {"#1f77b4"}, "noc": {"#9467bd"}}
    assert colours[1] == {"macs": {"#1f77b4"}, "noc": {"#9467bd"}, "selector": {"#e377c2"},
                          "laser": {component_color("laser")}}
    assert component_color("laser") in OTHER_COLORS


def test_processors_table_shows_the_arch_keys_that_differ():
    """trainer_vs_prior's PNPU and Trainer differ in their dataflow, load balancing, BN unit
    and speculator: each such key a row, in config.json's order; a section one design lacks
    reads "-", keys alike in both and the name are left out, and so are the keys the
    description's own rows show (the dataflow's, `desim.elaborate.dataflow_text`)."""
    pnpu = {"name": "pnpu", "pe_cluster": {"pes": 16}, "speculator": None,
            "mapping": {"dataflow": "weight_stationary", "load_balance": True},
            "vector_unit": {"lanes": 64, "fused_batchnorm": False}, "noc": {"links": [1, 2]}}
    trainer = {"name": "trainer", "pe_cluster": {"pes": 16}, "speculator": {"ops_per_cycle": 4096},
               "mapping": {"dataflow": "auto", "load_balance": False},
               "vector_unit": {"lanes": 64, "fused_batchnorm": True}, "noc": {"links": [1, 3]}}
    assert arch_differences({"pnpu": pnpu, "trainer": trainer}) == [
        ["`mapping.load_balance`", "true", "false"],
        ["`vector_unit.fused_batchnorm`", "false", "true"],
        ["`noc.links`", "[1, 2]", "[1, 3]"],
        ["`speculator.ops_per_cycle`", "-", "4096"]]
    assert arch_differences({"pnpu": pnpu}) == []
    # what the description's own rows show (precision, ...) is not repeated
    fp8 = {**trainer, "pe_cluster": {"pes": 16, "precision": "fp8"}}
    fp16 = {**trainer, "pe_cluster": {"pes": 16, "precision": "fp16"}}
    assert arch_differences({"fp16": fp16, "fp8": fp8}) == []


def test_a_ratio_claim_shows_its_two_figures():
    """dropback_lenet's accuracy claim reads "0.9891 (0.908 / 0.918)": the accuracies
    beside their ratio. A claim without `over` shows its value alone."""
    summary = {"runs": {"dropback": {"workload": {"accuracy": 0.9079999923706055}},
                        "dense": {"workload": {"accuracy": 0.9179999828338623}}}}
    ratio = check_claim(summary, Claim(metric="runs.dropback.workload.accuracy",
                                       over="runs.dense.workload.accuracy", paper=1.0,
                                       tolerance=0.05, compare="at_least"))
    assert ratio.value_text == "0.9891 (0.908 / 0.918)"
    alone = check_claim(summary, Claim(metric="runs.dense.workload.accuracy", paper=0.9,
                                       tolerance=0.05))
    assert alone.value_text == "0.918"


def test_a_traced_run_is_not_said_to_deviate_from_its_file():
    """--trace and --vcd are recorded as observe.* overrides; they change no figure."""
    import pandas as pd

    surprise = ClaimCheck(Claim(metric="comparison.hppu.speedup", paper=4.0, tolerance=0.8),
                          value=2.0)  # expected within, found outside
    traced = {"overrides": ["observe.trace=true", "observe.vcd=true"]}
    changed = {"overrides": ["observe.trace=true", "workload.batch=2"]}
    assert Results(Path("."), {}, traced, pd.DataFrame()).verdict(surprise) == \
        "OUTSIDE (unexpected)"
    assert Results(Path("."), {}, changed, pd.DataFrame()).verdict(surprise) == \
        "OUTSIDE (unexpected); the run deviated from its file (--set)"


def test_ranges_keep_the_papers_digits_and_large_figures_print_in_full():
    """Trainer's FP16 peak, 173.28 +- 34.66, read "138.6 to 208"; a cycle count in a ratio
    claim's operands read "4.242e+06"."""
    from desim.summary_text import fmt as _fmt

    check = ClaimCheck(Claim(metric="runs.x.cycles", paper=173.28, tolerance=34.66), 16.6)
    assert check.range_text == "138.62 to 207.94"
    assert _fmt(4_242_123.0) == "4,242,123" and _fmt(12_345.6) == "12,346"
    assert _fmt(9_999.5) == "10,000" and _fmt(-9_999.7) == "-10,000" and _fmt(-0.0) == "0"
    assert _fmt(0.0004) == "0.0004" and _fmt(1.2197) == "1.22"


def test_a_claim_is_titled_by_its_label_and_its_note_names_the_path():
    """The report's claim column read `runs.dense.units.pe_array.cycles /
    runs.hppu.units.pe_array.cycles`; a file's label says it in words."""
    from desim.report import _note_title

    bare = Claim(metric="comparison.hppu.speedup", paper=4.69, tolerance=0.94)
    named = Claim(metric="runs.dense.units.pe_array.cycles",
                  over="runs.hppu.units.pe_array.cycles", paper=4.69, tolerance=0.94,
                  label="HPPU speedup vs dense, conv and linear layers only")
    assert ClaimCheck(bare, 3.0).title == "comparison.hppu.speedup"
    assert ClaimCheck(named, 4.1).title == "HPPU speedup vs dense, conv and linear layers only"
    assert _note_title(ClaimCheck(named, 4.1)) == (
        "HPPU speedup vs dense, conv and linear layers only "
        "(`runs.dense.units.pe_array.cycles / runs.hppu.units.pe_array.cycles`)")


def test_an_idle_noc_link_reads_0_percent_and_a_port_off_the_noc_has_no_figure(tmp_path):
    """hppu_like.yaml's 4x4 mesh with XY routing from r0_0: no transfer goes east on row 1
    (r0_1 -> r1_1), so the run made no module for that link (`Noc._link`, on first use): it
    was 0% busy, as `desim topology --stats` labelled it before the report drew it too (it
    was drawn grey, as though it had no figure). DRAM's port and the global buffer's to its
    selector are no NoC link: no figure."""
    from arch.accelerator import build_graph
    from arch.draw import draw_topology
    from desim.experiment import load_design
    from desim.results_folder import graph_utilization

    graph = build_graph(load_design(ROOT / "configs" / "arch" / "hppu_like.yaml"))
    modules = {"q.noc.selector->r0_0": {"utilization": 0.5},
               "q.noc.r0_0->r1_0": {"utilization": 0.25},
               "q.pe_array": {"utilization": 0.4}, "q.dram": {"utilization": 0.7}}
    links = graph_utilization(graph, modules, "q")["links"]
    assert links["selector->r0_0"] == 0.5 and links["r0_0->r1_0"] == 0.25
    assert links["r0_1->r1_1"] == 0.0 and links["cluster_r3_3->r3_3"] == 0.0
    assert not {"dram->glb", "glb->dram", "glb->selector", "selector->glb"} & set(links)
    # 48 links between the 16 routers, 2 to and from each cluster, 2 for the selector's port
    assert len(links) == 48 + 2 * 16 + 2 == graph.number_of_edges() - 4
    dot = draw_topology(graph, tmp_path / "t.dot",
                        graph_utilization(graph, modules, "q")).read_text()
    assert '"r0_1" -> "r1_1" [label="32 B/cycle 0%"];' in dot
    assert '"r0_0" -> "r1_0" [label="32 B/cycle 25%"];' in dot
    assert '"glb" -> "selector" [label="32 B/cycle"];' in dot
    assert '"dram" -> "glb" [label=""];' in dot


def test_a_run_whose_design_this_desim_refuses_is_reported_without_its_topology(tmp_path):
    """A results folder written before a design rule existed: its config.json holds a run's
    design at 0.5 MHz (refused since clocks under 1 MHz are taken for GHz). Drawing its
    topology failed the whole report, exit 2 (before the report drew topologies it read no
    design); now the report is written, with the other run's topology and without that
    one's."""
    experiment = lenet300_experiment(tmp_path / "lenet300.yaml",
                                     {"new": {"method": "dense"}, "old": {"method": "dense"}},
                                     data="random")
    results = tmp_path / "results"
    run_file(experiment, results)
    config = json.loads((results / "config.json").read_text())
    config["architectures"]["old"]["core_clock_mhz"] = 0.5
    (results / "config.json").write_text(json.dumps(config))
    as_older_desims(results)
    md, _, _ = build_report([results], tmp_path / "rep" / "r.md")
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())
    assert "r_lenet300.new.topology.png" in images
    assert "r_lenet300.old.topology.png" not in images
    assert {"r_lenet300.new.timeline.png", "r_lenet300.old.timeline.png"} <= set(images)
    # and it says why
    assert ("- old: not drawn, " in md.read_text()
            and "architectures.old.core_clock_mhz: 0.5 MHz; the clock is in MHz"
            in md.read_text())
    # a stats.json without that run (its writing cut short): the same, a reason given
    stats = json.loads((results / "stats.json").read_text())
    del stats["old"]
    (results / "stats.json").write_text(json.dumps(stats))
    config["architectures"]["old"]["core_clock_mhz"] = 500
    (results / "config.json").write_text(json.dumps(config))
    md, _, _ = build_report([results], tmp_path / "rep" / "r.md")
    assert (f"- old: not drawn, {results / 'stats.json'}: has no entry for run 'old' (its "
            "runs: 'new')") in md.read_text()


def test_a_folder_written_before_the_busiest_parts_is_reported_without_them(tmp_path):
    """A results folder from before layers.csv named each layer-phase's busiest part and
    summary.json shared the time out by it: the report is written, its timelines by phase
    and the rest, and leaves out the bar, the slowest layer-phases and the timelines by
    busiest part, which it cannot draw."""
    experiment = lenet300_experiment(tmp_path / "lenet300.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    results = tmp_path / "results"
    run_file(experiment, results)
    layers = pd.read_csv(results / "layers.csv")
    layers.drop(columns=["busiest_part", "busiest_link", "busiest_share"]).to_csv(
        results / "layers.csv", index=False)
    summary = json.loads((results / "summary.json").read_text())
    del summary["runs"]["dense"]["time_by_busiest_part"]
    (results / "summary.json").write_text(json.dumps(summary))
    md, _, _ = build_report([results], tmp_path / "rep" / "r.md")
    text = md.read_text()
    images = set(re.findall(r"!\[[^]]*\]\(([^)]+)\)", text))
    assert {"r_lenet300.dense.timeline.png", "r_lenet300.energy.png"} <= images
    assert not {"r_lenet300.busiest_part.png", "r_lenet300.dense.bound_timeline.png"} & images
    assert "busiest part (% of its span)" not in text and "### Where the time went" in text
    assert ("The slowest layer-phases, rooflines and timelines by busiest part: not drawn, "
            "layers.csv has no `busiest_part`, `busiest_share` (written by an older desim)."
            in text)
    assert ("The time by each layer-phase's busiest part: not drawn, summary.json has no "
            "`time_by_busiest_part` (written by an older desim)." in text)


def test_plots_of_experiments_named_alike_keep_their_own_files(tmp_path):
    """Two folders of one experiment and a third experiment named as the second folder's
    plots were ("lenet300_2"), or as the first's plus a run ("lenet300_dense"): each plot
    its own file, where the later section's overwrote the earlier's (each then showed the
    other's numbers)."""
    folders = []
    for i, (name, run) in enumerate([("lenet300", "dense"), ("lenet300", "dense"),
                                     ("lenet300_2", "dense"), ("lenet300_dense", "x")]):
        path = lenet300_experiment(tmp_path / f"e{i}.yaml", {run: {"method": "dense"}},
                                   data="random")
        data = yaml.safe_load(path.read_text())
        data["name"] = name
        path.write_text(yaml.safe_dump(data))
        run_file(path, tmp_path / f"r{i}", [f"workload.batch={i + 1}"])
        folders.append(tmp_path / f"r{i}")
    md, _, _ = build_report(folders, tmp_path / "rep" / "r.md")
    sections = re.split(r"\n## ", md.read_text())[-4:]
    images = [re.findall(r"!\[[^]]*\]\(([^)]+)\)", text) for text in sections]
    assert all(images) and len({i for group in images for i in group}) == sum(map(len, images))
    assert len(list((tmp_path / "rep").glob("*.png"))) == sum(map(len, images))


def test_plots_of_runs_named_as_another_run_plus_a_kind_keep_their_own_files(tmp_path):
    """Runs `e` and `e_bound`: e's timeline by busiest part (kind bound_timeline) and
    e_bound's timeline were one file, r_lenet300_e_bound_timeline.png (11 plots for 12,
    both sections linking it). The parts of a plot's name are joined by dots, which no
    run's name holds. An earlier report's plots of the older naming are removed as the
    report is written again."""
    experiment = lenet300_experiment(tmp_path / "e.yaml",
                                     {"e": {"method": "dense"},
                                      "e_bound": {"method": "magnitude", "sparsity": 0.5}},
                                     data="random")
    run_file(experiment, tmp_path / "r")
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "r.md").write_text("# desim report\n\n![e timeline](r_lenet300_e_timeline.png)\n")
    (rep / "r_lenet300_e_timeline.png").write_bytes(PNG)  # an older desim's name
    md, html, _ = build_report([tmp_path / "r"], rep / "r.md")
    text = md.read_text()
    images = re.findall(r"!\[([^]]*)\]\(([^)]+)\)", text)
    assert len(images) == 12 and len({src for _, src in images}) == 12
    shown = dict(images)
    assert shown["lenet300: e timeline by busiest part"] == "r_lenet300.e.bound_timeline.png"
    assert shown["lenet300: e_bound timeline"] == "r_lenet300.e_bound.timeline.png"
    assert shown["lenet300: e timeline"] == "r_lenet300.e.timeline.png"
    assert shown["lenet300: energy per component"] == "r_lenet300.energy.png"
    assert {p.name for p in rep.glob("*.png")} == set(shown.values())
    assert all((rep / src).read_bytes()[:8] == PNG for src in shown.values())


def test_a_folder_given_twice_is_refused(tmp_path, monkeypatch):
    """Its claims were counted once a copy ("6 claims: 6 within" for three copies of 2)."""
    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    run_file(experiment, tmp_path / "r")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConfigError, match=r"given twice \(as .*r and .*elsewhere/\.\./r\); "
                                          "expected each results folder once"):
        build_report([tmp_path / "r", tmp_path / "elsewhere" / ".." / "r"],
                     tmp_path / "rep" / "r.md")
    # on the command line, each as typed: "./r/" had read as "r" ("as r and r")
    from desim.cli import app

    monkeypatch.chdir(tmp_path)
    twice = CliRunner().invoke(app, ["report", "r", "./r/"])
    assert twice.exit_code == 2
    assert "./r/: given twice (as r and ./r/); expected each results folder once" in " ".join(
        twice.output.split())


def test_an_interrupted_report_leaves_the_earlier_report_whole(tmp_path, monkeypatch):
    """Stopped while drawing its plots, a report leaves the earlier one and its plots as
    they were, and nothing of its own (it had deleted the earlier report.md and report.html
    and left its own plots mixed with the earlier ones)."""
    import desim.report

    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    run_file(experiment, tmp_path / "r")
    out = tmp_path / "rep" / "r.md"
    build_report([tmp_path / "r"], out)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert {"r.md", "r.html"} < set(before) and len(before) > 4   # the report and its plots
    (tmp_path / "r2").mkdir()
    for name in ("summary.json", "layers.csv", "energy.csv", "config.json"):
        (tmp_path / "r2" / name).write_bytes((tmp_path / "r" / name).read_bytes())
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    summary["wall_seconds"] = 99.0   # another report's text, the same plots' names
    (tmp_path / "r2" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(desim.report, "plot_time_by_busiest_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_report([tmp_path / "r2"], out)
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_a_folder_of_a_plots_name_and_a_report_name_with_spaces(tmp_path):
    """A folder that takes a plot's file name moves the experiment's plots to the next free
    name (the plot's write had failed with a traceback); a report named with a space links
    its plots in <...>, as CommonMark reads a link with spaces (none had shown)."""
    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    run_file(experiment, tmp_path / "r")
    (tmp_path / "rep" / "my r_lenet300.energy.png").mkdir(parents=True)
    md, _, _ = build_report([tmp_path / "r"], tmp_path / "rep" / "my r.md")
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())
    assert images and all(i.startswith("<my r_lenet300_2.") and i.endswith(".png>")
                          for i in images)
    assert all((tmp_path / "rep" / i.strip("<>")).is_file() for i in images)


@pytest.mark.parametrize("name", ["r#1%20?", "my r#2 (b)"])
def test_a_report_name_of_url_characters_links_its_plots(tmp_path, name):
    """A report named with #, % or ?: its image links had held the file names as they are
    (src="r#1%20?_lenet300.energy.png"), which a browser and a Markdown viewer read as a
    fragment, an escape and a query: no image showed. The links are percent-encoded, in
    <...> in the Markdown where they hold a space or parentheses; both resolve to the plots.
    Written again of another experiment, the report removes the earlier one's plots."""
    from html import unescape
    from urllib.parse import unquote

    from markdown_it import MarkdownIt

    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    run_file(experiment, tmp_path / "r")
    rep = tmp_path / "rep"
    md, html, _ = build_report([tmp_path / "r"], rep / f"{name}.md")
    text = md.read_text()
    encoded = name.replace("%", "%25").replace("#", "%23").replace("?", "%3F")
    energy = (f"<{encoded}_lenet300.energy.png>" if " " in name
              else f"{encoded}_lenet300.energy.png")
    assert f"![lenet300: energy per component]({energy})" in text
    shown = {p.name for p in rep.glob("*.png")}
    assert len(shown) == 7
    for page in (MarkdownIt("commonmark").render(text), html.read_text()):
        srcs = re.findall(r'<img src="([^"]*)"', page)
        assert {unquote(unescape(src)) for src in srcs} == shown
    run_file(experiment, tmp_path / "other", ["name=other"])
    build_report([tmp_path / "other"], rep / f"{name}.md")
    assert {p.name for p in rep.glob("*.png")} == {
        n.replace(f"{name}_lenet300", f"{name}_other") for n in shown}


def test_a_ratio_that_rounds_to_one_is_said_to_be_the_same():
    """Two equal runs had read "1.00x less, 1.00x faster"; a ratio that rounds to 1.00x
    either way is the same, and others keep their direction."""
    from desim.summary_text import more_or_less

    assert more_or_less(1.0, "less", "more") == "the same (1.00x)"
    assert more_or_less(0.999, "faster", "slower") == "the same (1.00x)"
    assert more_or_less(2.0, "less", "more") == "2.00x less"
    assert more_or_less(0.8, "less", "more") == "1.25x more"
    assert more_or_less(1.006, "less", "more") == "1.01x less"
    # against another's: "than", or "as" where the same ("the same (1.00x) than dense's")
    assert more_or_less(2.0, "less", "more", "dense's") == "2.00x less than dense's"
    assert more_or_less(1.0, "less", "more", "dense's") == "the same (1.00x) as dense's"


def test_equal_folders_compare_with_every_clause_named(tmp_path):
    """Two runs of one file: "energy the same (1.00x), the same (1.00x) on chip, the same
    (1.00x)." had left the time's clause without its noun; `desim run`'s line against the
    baseline said "the same (1.00x) than dense's"; and compare's experiment table showed
    "claims | [] | -" where one folder had claims and the other none."""
    from desim.cli import largest_parts
    from desim.compare import compare
    from desim.document import Table, to_markdown

    runs = {"dense": {"method": "dense"}, "twin": {"method": "dense"}}
    claim = {"metric": "comparison.twin.speedup", "paper": 1.0, "tolerance": 0.5}
    experiment = lenet300_experiment(tmp_path / "e.yaml", runs, data="random", claims=[claim])
    run_file(experiment, tmp_path / "a")
    run_file(experiment, tmp_path / "b", ["claims=[]"])
    blocks = compare(tmp_path / "a", tmp_path / "b")
    text = to_markdown(blocks)
    assert ("`after` against `before`: energy the same (1.00x), the same (1.00x) on chip, "
            "time the same (1.00x).") in text
    table = next(b for b in blocks if isinstance(b, Table) and b.header[0] == "experiment")
    assert ["`claims`", "-", "[]"] not in table.rows
    assert ["`claims.0.metric`", "comparison.twin.speedup", "-"] in table.rows
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    said = largest_parts(summary["runs"]["dense"], summary["runs"]["twin"], "dense")
    assert said.startswith("largest: dram, ") and "(the same (1.00x) as dense's)" in said


def test_a_claims_operands_are_shown_in_full():
    """hppu_vs_dense's conv-and-linear speedup read "4.644 (12,990,000 / 2,797,000)" for
    12,989,544 / 2,797,167 cycles: rounded figures whose zeros looked exact."""
    summary = {"runs": {"dense": {"cycles": 12_989_544}, "hppu": {"cycles": 2_797_167}}}
    check = check_claim(summary, Claim(metric="runs.dense.cycles", over="runs.hppu.cycles",
                                       paper=4.69, tolerance=0.94))
    assert check.value_text == "4.644 (12,989,544 / 2,797,167)"


def test_a_config_json_of_another_folder_is_refused(tmp_path):
    """config.json copied from another results folder: the report had checked that
    experiment's claims against these numbers and described its workload, exit 0. Its
    experiment, baseline, runs and each run's design must be summary.json's; `desim
    compare` reads the folder the same way."""
    from desim.compare import compare
    from tests.test_cli import desim

    runs = {"dense": {"method": "dense"}, "pruned": {"method": "magnitude", "sparsity": 0.5}}
    run_file(lenet300_experiment(tmp_path / "a.yaml", runs, data="random"), tmp_path / "a")
    run_file(lenet300_experiment(tmp_path / "b.yaml", runs, data="random"), tmp_path / "b",
             ["name=other", "runs.1.name=sparse", "arch.dense.name=dense2"])
    (tmp_path / "a" / "config.json").write_bytes((tmp_path / "b" / "config.json").read_bytes())
    fault = ("config.json is not summary.json's: experiment 'other' where summary.json has "
             "'lenet300'; runs dense, sparse where summary.json has dense, pruned; run dense's "
             "arch 'dense2' where summary.json has 'dense'; the file is from another folder")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'a'}: {fault}")):
        build_report([tmp_path / "a"], tmp_path / "r.md")
    with pytest.raises(ConfigError, match=re.escape(fault)):
        compare(tmp_path / "b", tmp_path / "a")
    refused = desim("report", str(tmp_path / "a"), "--out", str(tmp_path / "r.md"))
    assert refused.returncode == 2 and fault in " ".join(refused.stderr.split())
    assert not (tmp_path / "r.md").exists()


def test_a_config_json_of_another_what_if_of_the_experiment_is_refused(tmp_path):
    """An audit copied a what-if's config.json (the same experiment, runs and designs'
    names; a buffer of another size) into the first folder: `desim compare` then said "its
    architecture is the same in both" beside different numbers. summary.json records the
    resolved sections' sha256; they must be config.json's."""
    from desim.compare import compare

    runs = {"dense": {"method": "dense"}, "pruned": {"method": "magnitude", "sparsity": 0.5}}
    exp = lenet300_experiment(tmp_path / "a.yaml", runs, data="random")
    run_file(exp, tmp_path / "a")
    run_file(exp, tmp_path / "b", ["arch.pruned.global_buffer.capacity_kib=256"])
    compare(tmp_path / "a", tmp_path / "b")  # each folder whole: read
    (tmp_path / "a" / "config.json").write_bytes((tmp_path / "b" / "config.json").read_bytes())
    fault = ("config.json is not summary.json's: its resolved experiment or architectures are "
             "not those summary.json's run resolved (config_sha256); the file was edited after "
             "the run or is another folder's")
    with pytest.raises(ConfigError, match=re.escape(fault)):
        compare(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ConfigError, match=re.escape(fault)):
        build_report([tmp_path / "a"], tmp_path / "r.md")


def test_an_inference_reports_no_gradient_sparsity(tmp_path):
    """An inference simulates no backward pass (BP and WG 0 cycles), so it has no dY
    sparsity: null in summary.json and "-" in the report's runs table (the capture's dY had
    been reported, 0.50 for permdnn_lenet300). A training of the same has one."""
    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    run_file(experiment, tmp_path / "infer", ["workload.inference=true"])
    run_file(experiment, tmp_path / "train")
    infer, train = (json.loads((tmp_path / name / "summary.json").read_text())["runs"]["dense"]
                    for name in ("infer", "train"))
    assert infer["phases"]["BP"]["cycles"] == infer["phases"]["WG"]["cycles"] == 0
    assert infer["workload"]["gradient_sparsity"] is None
    assert 0 < train["workload"]["gradient_sparsity"] < 1
    assert infer["workload"]["activation_sparsity"] == train["workload"]["activation_sparsity"]
    md, _, _ = build_report([tmp_path / "infer"], tmp_path / "r.md")
    row = next(line for line in md.read_text().splitlines() if line.startswith("| dense |"))
    w, x = infer["workload"]["weight_sparsity"], infer["workload"]["activation_sparsity"]
    assert f"| {w:.2f} / {x:.2f} / - |" in row


def test_the_assumptions_name_a_topology_file_not_a_model():
    """A SCALE-Sim topology has no model, arguments, input or data: its line had read
    "Workload: `None` {}, batch 1, input the model default, data `digits`"."""
    from desim.report import workload_text

    topology = {"model": None, "scalesim_topology": "/c/workloads/resnet18_scalesim.csv",
                "model_args": {}, "batch": 1, "input_shape": None, "data": "digits",
                "training": None, "inference": True}
    assert workload_text(topology) == ("Workload: SCALE-Sim topology "
                                       "`/c/workloads/resnet18_scalesim.csv` (dense layers), "
                                       "batch 1, inference")
    model = {"model": "lenet5", "scalesim_topology": None, "model_args": {}, "batch": 2,
             "input_shape": [1, 28, 28], "data": "digits", "training": {"iterations": 5},
             "inference": False}
    assert workload_text(model) == ("Workload: `lenet5` {}, batch 2, input [1, 28, 28], data "
                                    "`digits`, trained first")


@pytest.mark.parametrize("phases, label", [
    (["FF"], "energy (uJ), FF"),                          # an inference
    (["FF", "BP", "WG"], "energy (uJ), FF + BP + WG"),
    (["WU", "FF", "WG", "BP"], "energy (uJ), FF + BP + WG + WU"),   # weight_update: sgd
])
def test_the_layer_energy_plot_names_the_phases_it_sums(tmp_path, monkeypatch, phases, label):
    """Each layer's bar sums every phase energy.csv has for the run; its x-label had read
    "FF + BP + WG" for an inference (FF alone) and with a weight update (WU too)."""
    import desim.plots
    from desim.plots import plot_layer_energy

    drawn = []
    monkeypatch.setattr(desim.plots, "save_figure",
                        lambda fig, path: drawn.append(fig.axes[0].get_xlabel()) or path)
    energy = pd.DataFrame({"run": "r", "layer": "fc1", "phase": phases, "component": "macs",
                           "energy_j": 1e-6})
    layers = pd.DataFrame({"run": ["r"], "layer": ["fc1"]})
    results = Results(tmp_path, {"runs": {"r": {}}}, {}, layers, energy=energy)
    plot_layer_energy(results, "r", tmp_path / "e.png")
    assert drawn == [label]


def test_a_report_written_again_removes_the_earlier_ones_plots(tmp_path):
    """`desim report` of another folder to the same --out left the earlier report's plots
    behind, shown by nothing (r_lenet300_*.png beside a report of lenet5). It removes those
    the earlier report showed and this one does not draw; a file of the same pattern that
    no report showed, another report's plots and other files stay."""
    from small_experiments import lenet5_bare_experiment

    run_file(lenet300_experiment(tmp_path / "a.yaml", {"dense": {"method": "dense"}},
                                 data="random"), tmp_path / "a")
    run_file(lenet5_bare_experiment(tmp_path / "b.yaml"), tmp_path / "b")
    rep = tmp_path / "rep"
    build_report([tmp_path / "a"], rep / "r.md")
    build_report([tmp_path / "a"], rep / "q.md")
    first = {p.name for p in rep.glob("r_*.png")}
    assert "r_lenet300.dense.timeline.png" in first
    keep = {"r_mine_energy.png", "notes.txt", "r_lenet300.png"}  # none a report showed
    for name in keep:
        (rep / name).write_text("mine")
    build_report([tmp_path / "b"], rep / "r.md")
    md = (rep / "r.md").read_text()
    shown = set(re.findall(r"!\[[^]]*\]\(([^)]+)\)", md))
    plots = {p.name for p in rep.glob("r_*.png")} - keep
    assert plots == shown and all(name.startswith("r_lenet5.") for name in plots)
    assert all((rep / name).read_text() == "mine" for name in keep)
    assert {p.name for p in rep.glob("q_*.png")} == {n.replace("r_", "q_", 1) for n in first}


@pytest.mark.parametrize("label", [
    "quickstart (/tmp/fix_report_out/qs)",                           # two folders of one
    "quickstart (/tmp/" + "a_folder_named_at_length/" * 4 + "qs2)",  # a path over a line
])
def test_a_plots_long_title_is_wrapped_to_fit_it(tmp_path, monkeypatch, label):
    """A report of two folders of one experiment titles its plots with each folder's path:
    the roofline's "quickstart (/tmp/fix_report_out/qs): hppu, roofline of its conv and
    linear layer-phases" ran past the figure's right edge, cut at "layer-pha". A title that
    does not fit is wrapped onto more lines (a path longer than a line broken within),
    every character kept; one that fits is left on one line."""
    import desim.plots
    from desim.plots import plot_energy, plot_roofline

    drawn = []
    new_axes = desim.plots.new_axes
    monkeypatch.setattr(desim.plots, "new_axes",
                        lambda *size: drawn.append(new_axes(*size)) or drawn[-1])
    layers = pd.DataFrame({"run": "hppu", "layer": ["c1", "c2"], "unit": "pe_array",
                           "dram_bytes": [100, 400], "processed_macs": [1000, 1000],
                           "start_cycle": [0, 10], "end_cycle": [10, 30],
                           "busiest_part": ["dram", "pe_array"]})
    summary = {"experiment": "quickstart",
               "runs": {"dense": {"energy_by_component_j": {"macs": 1e-3}},
                        "hppu": {"energy_by_component_j": {"macs": 5e-4}}}}
    results = Results(tmp_path, summary, {}, layers, label=label)
    plot_roofline(results, "hppu", {"macs_per_cycle": 64, "macs_per_dram_byte": 8.0},
                  tmp_path / "roofline.png")
    plot_energy(results, tmp_path / "energy.png")
    results.label = ""  # (the experiment's name alone: it fits)
    plot_energy(results, tmp_path / "short.png")
    titles = []
    for fig, ax in drawn:
        box, page = ax.title.get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1, ax.get_title()
        titles.append(ax.get_title())
    roofline, energy, short = titles
    def letters(text: str) -> str:
        return "".join(text.split())

    assert "\n" in roofline and letters(roofline) == letters(
        f"{label}: hppu, roofline of its conv and linear layer-phases")
    assert "\n" in energy and letters(energy) == letters(f"{label}: energy per component")
    assert short == "quickstart: energy per component"
    assert all((tmp_path / f"{name}.png").read_bytes()[:8] == PNG
               for name in ("roofline", "energy", "short"))
