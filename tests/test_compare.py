"""`desim compare BEFORE AFTER`: a what-if's configuration change and what it did."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from small_experiments import DENSE, lenet5_bare_experiment, lenet300_experiment

from desim.compare import compare
from desim.document import to_markdown
from desim.gains import energy_gains, time_gains
from desim.results_folder import read_summary_and_config
from desim.runner import run_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """LeNet-300, dense and 90% magnitude-pruned, then the same at batch 4 with a NoC ten
    times dearer: two folders a what-if apart."""
    root = tmp_path_factory.mktemp("compare")
    exp = lenet300_experiment(root / "lenet300.yaml", {
        "dense": {"method": "dense"}, "pruned": {"method": "magnitude", "sparsity": 0.9}},
        claims=[{"metric": "comparison.pruned.speedup", "paper": 1.0, "tolerance": 0.5,
                 "label": "pruned speedup"}])
    run_file(exp, root / "before")
    run_file(exp, root / "after", ["workload.batch=4",
                                   "arch.pruned.energy.noc_pj_per_bit_hop=2.5"])
    return root / "before", root / "after"


def test_compare_says_what_changed_and_what_it_did(folders):
    before, after = folders
    text = to_markdown(compare(before, after))
    assert "--set items: before: none; after: `workload.batch=4`, " \
           "`arch.pruned.energy.noc_pj_per_bit_hop=2.5`." in text
    assert "| `workload.batch` | 2 | 4 |" in text          # the experiment's change
    assert text.count("Its architecture is the same in both.") == 1   # dense's
    assert "| `energy.noc_pj_per_bit_hop` | - | 2.5 |" in text  # pruned's
    b, _ = read_summary_and_config(before)
    a, _ = read_summary_and_config(after)
    for run in ("dense", "pruned"):
        energy = energy_gains(b["runs"][run], a["runs"][run])
        time = time_gains(b["runs"][run], a["runs"][run])
        ratio, speedup = energy.loc["total", "shrink"], time.loc["total", "shrink"]
        assert ratio < 1 and speedup < 1   # twice the batch: more joules, more time
        assert (f"`after` against `before`: energy {1 / ratio:.2f}x more, ") in text
        assert f"{1 / speedup:.2f}x slower." in text
        assert speedup == pytest.approx(b["runs"][run]["seconds"] / a["runs"][run]["seconds"])
    # the NoC's energy grows as its price, 0.249 pJ a bit-hop (28 nm) to 2.5, times its
    # bit-hops, which grow less than twice (the weights do not double with the batch)
    # the claim as each folder gives it
    speedups = [f"{r['comparison']['pruned']['speedup']:.4g}" for r in (b, a)]
    assert re.search(rf"^\| pruned speedup \| 1 \| {speedups[0]} \| {speedups[1]} \| 0.5 to 1.5 "
                     r"\| (within|OUTSIDE \(unexpected\)) \| (within|OUTSIDE \(unexpected\)) \|$",
                     text, re.M), text
    noc = energy_gains(b["runs"]["pruned"], a["runs"]["pruned"]).loc["noc"]
    price = [r["runs"]["pruned"]["energy_prices_pj"]["noc_pj_per_bit_hop"] for r in (b, a)]
    assert price == [pytest.approx(0.4 * 28 / 45), 2.5]
    hops = noc["run"] / price[1] / (noc["baseline"] / price[0])
    assert 1 < hops < 2
    assert text.count("| component | before (mJ) | after (mJ) | shrinks |") == 2


def test_compare_runs_only_the_named_run(folders):
    text = to_markdown(compare(*folders, runs=["pruned"]))
    assert "## Run `pruned`" in text and "## Run `dense`" not in text


def desim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desim", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_compare_on_the_command_line_and_its_bad_input(folders, tmp_path):
    before, after = folders
    ok = desim("compare", str(before), str(after), "--out", str(tmp_path / "c.md"))
    assert ok.returncode == 0, ok.stderr
    assert "after against before" in ok.stdout
    assert "…" not in ok.stdout  # at 80 columns a wide table's cells fold, never cut short
    assert (tmp_path / "c.md").read_text() == to_markdown(compare(before, after))
    for args, fragment in (
            ((str(before), str(tmp_path)), "not a results folder: cannot read summary.json"),
            ((str(before), str(after), "--run", "hppu"),
             "--run hppu: not a run of both folders (runs of both: dense, pruned)")):
        bad = desim("compare", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert fragment in " ".join(bad.stderr.split()), bad.stderr


def test_a_runs_setting_reads_as_its_set_key():
    """A list of sections (the runs) compares item by item, as `--set runs.1...` names the
    key; a list of values (a mesh's shape) stays one value."""
    from desim.report import config_differences

    before = {"runs": [{"name": "a", "pruning": {"sparsity": 0.75}}], "shape": [4, 4]}
    after = {"runs": [{"name": "a", "pruning": {"sparsity": 0.8}}], "shape": [2, 8]}
    assert config_differences({"before": before, "after": after}) == [
        ["`runs.0.pruning.sparsity`", "0.75", "0.8"], ["`shape`", "[4, 4]", "[2, 8]"]]


def test_a_configuration_difference_prints_its_values_exactly():
    """Values are printed as written, never rounded: through the tables' 4 significant
    digits 0.70001 against 0.7 and 500.01 against 500 had read as equal, 126.04 as 126."""
    from desim.report import config_differences

    before = {"sparsity": 0.7, "clock_mhz": 500, "lanes": 126.04, "big": 1048576}
    after = {"sparsity": 0.70001, "clock_mhz": 500.01, "lanes": 126, "big": 1048577}
    assert config_differences({"before": before, "after": after}) == [
        ["`sparsity`", "0.7", "0.70001"], ["`clock_mhz`", "500", "500.01"],
        ["`lanes`", "126.04", "126"], ["`big`", "1048576", "1048577"]]


def test_a_folder_against_itself_is_refused(tmp_path):
    from small_experiments import lenet300_experiment

    from desim.compare import compare
    from desim.errors import ConfigError
    from desim.runner import run_file

    run_file(lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                 data="random"), tmp_path / "r")
    with pytest.raises(ConfigError, match="the same folder as .*r: expected the folder of a "
                                          "what-if against the one before it"):
        compare(tmp_path / "r", tmp_path / "r")


def test_what_the_figures_leave_out_is_said_and_runs_of_one_folder_are_named(tmp_path):
    """LeNet-5 without a vector unit leaves its two max pools out of its time and energy:
    `desim run` says so, and now the report and the comparison say it too (they had shown
    its figures as whole). A run of one folder only is named as not compared."""
    from desim.document import Bullets, Para, to_markdown
    from desim.report import build_report
    from desim.runner import run_file

    experiment = lenet5_bare_experiment(tmp_path / "lenet5.yaml")
    run_file(experiment, tmp_path / "before")
    run_file(experiment, tmp_path / "after", ["arch.*.pe_cluster.pes=8"])
    note = ("no vector unit (arch dense): 2 of the model's 3 vector layers (batch norm, "
            "pooling, residual adds, GELUs, and ReLUs after them) are not simulated")
    md, _, _ = build_report([tmp_path / "after"], tmp_path / "r.md")
    assert f"bare: {note}" in md.read_text()
    assert "dense: no vector unit" not in md.read_text()
    said = to_markdown(compare(tmp_path / "before", tmp_path / "after"))
    assert f"before: {note}" in said and f"after: {note}" in said
    assert "Not compared" not in said
    run_file(experiment, tmp_path / "one", ["runs=[{name: dense, arch: " + DENSE + "}]"])
    blocks = compare(tmp_path / "after", tmp_path / "one")
    assert Para("Not compared, a run of one folder only: before's `bare`.") in blocks
    assert not any(isinstance(b, Bullets) for b in blocks)


def test_folders_made_by_other_code_are_said_to_be(tmp_path):
    """config.json records which desim made the results (version, commit, modified files):
    two folders of one configuration whose numbers differ had compared as 'the same'."""
    import json

    from desim.document import to_markdown
    from desim.results import provenance
    from desim.runner import run_file

    experiment = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                                     data="random")
    for name in ("before", "after"):
        run_file(experiment, tmp_path / name)
    config = json.loads((tmp_path / "after" / "config.json").read_text())
    assert config["desim"] == provenance() and config["desim"]["version"]
    assert "Made by other code" not in to_markdown(compare(tmp_path / "before",
                                                           tmp_path / "after"))
    config["desim"] = {"version": "0.0.9", "commit": "0123456789abcdef", "modified": True}
    (tmp_path / "after" / "config.json").write_text(json.dumps(config))
    del (config := json.loads((tmp_path / "before" / "config.json").read_text()))["desim"]
    (tmp_path / "before" / "config.json").write_text(json.dumps(config))
    assert ("Made by other code: before a desim that did not record itself, after desim "
            "0.0.9 at 0123456789 with modified files.") in to_markdown(
                compare(tmp_path / "before", tmp_path / "after"))
    # two edits of one commit: told apart by their diffs' hashes
    for name, diff in (("before", "aaaaaaaaaaaa"), ("after", "bbbbbbbbbbbb")):
        config = json.loads((tmp_path / name / "config.json").read_text())
        config["desim"] = {"version": "0.0.9", "commit": "0123456789abcdef", "modified": True,
                           "diff_sha256": diff}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    assert ("Made by other code: before desim 0.0.9 at 0123456789 with modified files (diff "
            "aaaaaaaaaa), after desim 0.0.9 at 0123456789 with modified files (diff "
            "bbbbbbbbbb).") in to_markdown(compare(tmp_path / "before", tmp_path / "after"))


def test_compare_writes_markdown_only_to_a_markdown_name(tmp_path):
    """`--out c.html` had written Markdown into c.html, exit 0 (report refuses it too)."""
    from tests.test_cli import desim

    result = desim("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                   str(tmp_path / "c.html"))
    assert result.returncode == 2, result.stderr
    assert "--out " in result.stderr and "the comparison is Markdown; name it FILE.md" in \
        " ".join(result.stderr.split())
    assert not (tmp_path / "c.html").exists()
