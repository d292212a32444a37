"""A model from the user's own file (`workload.model: "file.py:factory"`): counted exactly,
refused with a one-line error (exit 2) when it cannot be, hashed into the cache key and
recorded in config.json; and every built-in passes the same check of what is counted."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.runner import run_file
from desim.workload_cache import cache_key
from mappings.models import INPUT_SHAPES, MODELS, UNCOUNTED, build_model
from mappings.models.supported import FANOUT, refuse_uncounted
from mappings.pruning import PruningSpec
from mappings.workload import WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]
DENSE = ROOT / "configs" / "arch" / "dense.yaml"
EXAMPLE = ROOT / "configs" / "experiments" / "custom_model.yaml"
HEADER = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
          "from mappings.models.common import Add, Fork, MatMul\n\n")


def desim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desim", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def write_model(folder: Path, body: str, *, model: str = "net.py:make",
                workload: dict | None = None) -> Path:
    """`body` (after HEADER) as folder/net.py, and an experiment running `model` on the
    dense design; returns the experiment's path."""
    (folder / "net.py").write_text(HEADER + textwrap.dedent(body))
    spec = {"model": model, "batch": 2, "input_shape": [3, 8, 8], "num_classes": 10,
            "data": "random", **(workload or {})}
    experiment = {"name": "mine", "workload": spec,
                  "runs": [{"name": "dense", "arch": str(DENSE), "pruning": {"method": "dense"}}],
                  "baseline": "dense"}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


HEAD = "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)"


def test_one_conv_model_counts_the_closed_form(tmp_path):
    """K*C*R*S*P*Q*N nominal MACs in each phase it runs (FF and WG: its input is the data,
    so no BP), all effectual on random (non-zero) data with dense weights. No padding: desim
    counts no MAC on a padded zero."""
    n, c, k, r, p = 2, 3, 4, 3, 8  # a 10 x 10 input, no padding: P = Q = 8
    path = write_model(tmp_path, f"""
        def make(num_classes):
            return nn.Sequential(nn.Conv2d({c}, {k}, {r}, bias=False), nn.Flatten())
        """, workload={"batch": n, "input_shape": [c, p + r - 1, p + r - 1],
                       "num_classes": k * p * p})
    run_file(path, tmp_path / "out")
    layers = pd.read_csv(tmp_path / "out" / "layers.csv", dtype={"layer": str})
    conv = layers[layers["layer"] == "0"].set_index("phase")
    assert set(conv.index) == {"FF", "WG"}
    for phase in ("FF", "WG"):
        assert conv.loc[phase, "macs"] == k * c * r * r * p * p * n == 13_824
        assert conv.loc[phase, "effectual_macs"] == k * c * r * r * p * p * n


def test_the_shipped_example_runs_and_records_its_file(tmp_path):
    result = desim("run", str(EXAMPLE), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    dense, hppu = summary["runs"]["dense"], summary["runs"]["hppu"]
    assert dense["macs"] > 0
    # the dense processor does every nominal MAC; ReLU zeros make fewer effectual
    for phase in ("FF", "BP", "WG"):
        assert dense["phases"][phase]["processed_macs"] == dense["phases"][phase]["macs"]
    assert 0 < dense["effectual_macs"] <= dense["macs"] == hppu["macs"]
    assert hppu["effectual_macs"] < dense["effectual_macs"]  # 70% of the weights pruned
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    model_file = ROOT / "configs" / "models" / "tiny_cnn.py"
    assert config["experiment"]["workload"]["model"] == f"{model_file}:tiny_cnn"
    assert config["experiment"]["workload"]["model_file"] == {
        "path": str(model_file), "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}


def test_an_edited_file_is_another_cache_key(tmp_path):
    path = write_model(tmp_path, f"def make(num_classes):\n    return nn.Sequential({HEAD})\n")
    experiment = load_experiment(path)
    workload, pruning = experiment.workloads["dense"], experiment.spec.runs[0].pruning
    assert workload.model == f"{tmp_path / 'net.py'}:make"  # resolved from the experiment's
    before = cache_key(workload, pruning)
    assert cache_key(workload, pruning) == before
    (tmp_path / "net.py").write_text((tmp_path / "net.py").read_text() + "# edited\n")
    assert cache_key(workload, pruning) != before


def test_an_edited_topology_csv_is_another_cache_key(tmp_path):
    topology = tmp_path / "t.csv"
    topology.write_text("Layer, IFMAP Height\n")
    workload = WorkloadSpec(scalesim_topology=str(topology))
    pruning = PruningSpec(method="dense")
    before = cache_key(workload, pruning)
    assert cache_key(workload, pruning) == before
    topology.write_text("Layer, IFMAP Height\nconv1, 224\n")
    assert cache_key(workload, pruning) != before


def test_edited_capturing_code_is_another_cache_key(tmp_path, monkeypatch):
    """The key holds a hash of the front end's source: a capture cached by other code is
    not taken for this code's (a version number kept by hand was one edit from that)."""
    import shutil

    import mappings
    from desim import workload_cache

    experiment = load_experiment(ROOT / "configs" / "experiments" / "quickstart.yaml")
    workload, pruning = experiment.workloads["dense"], experiment.spec.runs[0].pruning
    before = cache_key(workload, pruning)
    copy = tmp_path / "mappings"
    shutil.copytree(Path(mappings.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(mappings, "__file__", str(copy / "__init__.py"))
    workload_cache.capture_code_sha256.cache_clear()
    try:
        assert cache_key(workload, pruning) == before  # the same code, elsewhere
        (copy / "capture.py").write_text((copy / "capture.py").read_text() + "# edited\n")
        workload_cache.capture_code_sha256.cache_clear()
        assert cache_key(workload, pruning) != before
    finally:
        workload_cache.capture_code_sha256.cache_clear()


@pytest.mark.parametrize(("body", "workload", "key", "fragments"), [
    ("", {"model": "missing.py:make"}, "workload.model", ["model file", "missing.py",
                                                         "not found"]),
    (f"def other():\n    return nn.Sequential({HEAD})\n", {}, "workload.model",
     ["net.py", "has no 'make'; it defines other"]),
    ("raise ImportError('no module named shiny')\n", {}, "workload.model",
     ["net.py", "raised on import: ImportError: no module named shiny"]),
    ("def make(num_classes):\n    return 42\n", {}, "workload.model",
     ["returned a value of type int, not an nn.Module"]),
    (f"def make(num_classes):\n    return nn.Sequential(nn.Conv2d(1, 4, 3), {HEAD})\n", {},
     "workload.input_shape", ["cannot take inputs of shape [3, 8, 8]"]),
    (f"def make(num_classes):\n    return nn.Sequential({HEAD})\n", {"input_shape": None},
     "workload.input_shape", ["from a file has no default input; give workload.input_shape"]),
    (f"def make(width: int = 4):\n    return nn.Sequential({HEAD})\n",
     {"model_args": {"depth": 3}}, "workload.model_args.depth",
     ["takes no argument 'depth'; it takes width"]),
    # a factory of no arguments given one; one of a required argument given none (had
    # said "it takes " and "missing required argument, got ArgsKwargs(())")
    (f"def make():\n    return nn.Sequential({HEAD})\n",
     {"model_args": {"depth": 3}}, "workload.model_args.depth",
     ["takes no argument 'depth'; it takes none"]),
    (f"def make(width: int):\n    return nn.Sequential({HEAD})\n", {},
     "workload.model_args.width",
     ["needs argument 'width', which workload.model_args does not give; it takes width"]),
    (f"def make(width: int = 4):\n    return nn.Sequential({HEAD})\n",
     {"model_args": {"width": "4"}}, "workload.model_args.width",
     ["argument 'width': input should be a valid integer, got '4'"]),
    ("def make(num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(192, 5))\n", {},
     "workload.num_classes", ["outputs [1, 5]", "needs [1, 10]"]),
])
def test_a_file_model_that_cannot_run_is_one_line_naming_file_and_key(
        tmp_path, body, workload, key, fragments):
    spec = {k: v for k, v in workload.items() if v is not None}
    path = write_model(tmp_path, body, workload=spec)
    if "input_shape" in workload:
        data = yaml.safe_load(path.read_text())
        del data["workload"]["input_shape"]
        path.write_text(yaml.safe_dump(data))
    result = desim("check", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"exp.yaml: {key}:" in message
    for fragment in fragments:
        assert fragment in message, message


BLOCK = """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Sequential({head})
            {extra}

        def forward(self, x):
            {forward}
            return self.head(y)

    def make(num_classes):
        return Net()
    """


@pytest.mark.parametrize(("forward", "extra", "fragments"), [
    ("y = self.conv(x) + self.conv(x)", "", ["the call 'add' at net.py:", "use an Add module"]),
    ("y = torch.relu(self.conv(x))", "", ["the call 'relu'", "use an nn.ReLU module"]),
    ("y = F.conv2d(x, self.conv.weight, padding=1)", "",
     ["the call 'conv2d'", "use an nn.Conv2d module"]),
    ("y = self.conv(torch.cat([x, x], 1)[:, :3])", "",
     ["the call 'cat'", "no concatenation"]),
    ("y = self.conv(x @ self.w)", "self.w = nn.Parameter(torch.ones(8, 8))",
     ["the call 'matmul'", "use a MatMul module"]),
    ("y = self.conv(x).mean((2, 3), keepdim=True)", "",
     ["the call 'mean'", "nn.AdaptiveAvgPool2d(1) then nn.Flatten()"]),
    ("y = self.conv(self.c1(x.flatten(2)).unsqueeze(2).expand(-1, -1, 8, -1))",
     "self.c1 = nn.Conv1d(3, 3, 1)",
     ["layer 'c1' is an nn.Conv1d", "2-D convolutions (nn.Conv2d) only"]),
    ("y = self.conv(x)[:, :, :1, :1].sigmoid() + 0", "",
     ["the call 'sigmoid'"]),
    ("y = self.conv(self.up(x)[:, :, :8, :8])", "self.up = nn.ConvTranspose2d(3, 3, 2, 2)",
     ["layer 'up' is an nn.ConvTranspose2d"]),
    ("y = self.conv(self.lstm(x.flatten(2))[0].reshape(x.shape))",
     "self.lstm = nn.LSTM(64, 64, batch_first=True)",
     ["layer 'lstm' is an nn.LSTM", "write its gates as nn.Linear layers"]),
    ("y = self.conv(self.emb(x.long()).sum(-1))", "self.emb = nn.Embedding(4, 1)",
     ["layer 'emb' is an nn.Embedding", "table look-up"]),
    ("y = self.conv(x) if x.sum() > 0 else self.conv(-x)", "",
     ["torch.fx cannot trace it", "control flow on tensor values"]),
    # one tensor to two layers without a Fork: BP's sum of their gradients is uncounted
    ("h = self.relu(self.conv(x)); y = self.add(self.c2(h), self.c3(h))",
     "self.relu, self.add = nn.ReLU(), Add(); self.c2 = nn.Conv2d(4, 4, 1); "
     "self.c3 = nn.Conv2d(4, 4, 1)",
     ["the tensor 'relu' at net.py:", "goes to 2 consumers (c2, c3) without a Fork",
      "Fork (from mappings.models.common)"]),
])
def test_work_the_capture_cannot_see_is_refused(tmp_path, forward, extra, fragments):
    body = BLOCK.format(head=HEAD, extra=extra or "pass", forward=forward)
    path = write_model(tmp_path, body)
    result = desim("run", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "exp.yaml: workload.model:" in message
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out" / "summary.json").exists()


def test_reshapes_and_shape_arithmetic_pass_the_check(tmp_path):
    """Moving data (view, permute, indexing) and arithmetic on sizes compute nothing."""
    body = BLOCK.format(head=HEAD, extra="self.relu = nn.ReLU()", forward=(
        "y = self.relu(self.conv(x.permute(0, 1, 3, 2).contiguous()))"
        ".view(x.shape[0], 4, 8 * x.size(2) // 8, -1)"))
    path = write_model(tmp_path, body)
    assert desim("check", str(path)).returncode == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_built_in_passes_the_check_with_only_its_declared_exceptions(name):
    small = {"vgg16": {"cifar": True}, "resnet18": {"cifar": True},
             "resnet50": {"cifar": True}}.get(name, {})
    shape = (3, 32, 32) if small or name == "mobilenet_v2" else INPUT_SHAPES[name]
    model = build_model(name, **small)
    allowed = UNCOUNTED.get(name, frozenset())
    refuse_uncounted(model, name, shape, allowed)
    for call in allowed:  # each exception is needed: without it, the check refuses
        said = "without a Fork" if call == FANOUT else f"'{call}'"
        with pytest.raises(ConfigError, match=said):
            refuse_uncounted(model, name, shape, allowed - {call})


def test_a_sweep_loads_the_file_in_its_dask_workers(tmp_path, monkeypatch):
    """The workers import the file by its resolved path, whatever their folder: each point
    ran, the same numbers as a single run, and names the file and its hash."""
    from desim.sweep import sweep

    (tmp_path / "models").mkdir()
    model_file = tmp_path / "models" / "tiny_cnn.py"
    model_file.write_bytes((ROOT / "configs" / "models" / "tiny_cnn.py").read_bytes())
    data = yaml.safe_load(EXAMPLE.read_text())
    data["workload"].update(model="../models/tiny_cnn.py:tiny_cnn", batch=2)
    data["runs"] = data["runs"][:1]
    data["runs"][0]["arch"] = str(DENSE)
    data["sweep"] = {"mode": "grid", "axes": {"workload.model_args.width": [4, 8]}}
    (tmp_path / "exp").mkdir()
    path = tmp_path / "exp" / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path / "models")  # not the experiment's folder
    sweep(path, tmp_path / "out", workers=1)
    points = [json.loads(p.read_text()) for p in (tmp_path / "out" / "points").glob("*.json")]
    assert sorted(p["overrides"]["workload.model_args.width"] for p in points) == [4, 8]
    single = run_file(path, tmp_path / "single", ["workload.model_args.width=8"])
    for point in points:
        assert point["status"] == "ok", point["error"]
        assert point["config"]["experiment"]["workload"]["model_file"] == {
            "path": str(model_file), "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}
        if point["overrides"]["workload.model_args.width"] == 8:
            assert point["runs"]["dense"]["macs"] == single["runs"]["dense"]["macs"]



def test_an_inference_runs_the_model_as_deployed(tmp_path):
    """At inference dropout is the identity and a batch norm uses its running statistics
    (the model in eval mode). Captured in training mode, the dropout had zeroed about half of
    the last layer's inputs (its effectual MACs halved), and the norm had used the batch's
    statistics: with running means of 5, the ReLU after it zeroes every input of the next
    layer, which then has no effectual MAC."""
    import desim

    experiment = write_model(tmp_path, """
        class Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.a = nn.Linear(192, 64, bias=False)
                self.drop = nn.Dropout(0.5)
                self.b = nn.Linear(64, 32, bias=False)
                self.norm = nn.BatchNorm1d(32)
                self.relu = nn.ReLU()
                self.c = nn.Linear(32, num_classes, bias=False)
                self.norm.running_mean.fill_(5.0)

            def forward(self, x):
                return self.c(self.relu(self.norm(self.b(self.drop(self.a(x.flatten(1)))))))

        def make(num_classes):
            return Net(num_classes)
        """, workload={"inference": True, "input_shape": [192]})
    layers = desim.run(experiment).layers
    ff = layers[(layers["phase"] == "FF") & (layers["unit"] == "pe_array")].set_index("layer")
    assert set(layers["phase"]) == {"FF"}
    assert ff.loc["a", "effectual_macs"] == 2 * 192 * 64
    assert ff.loc["b", "effectual_macs"] == 2 * 64 * 32  # no input dropped
    assert ff.loc["c", "effectual_macs"] == 0    # (y - 5) / 1, then the ReLU: all zero
    assert ff.loc["c", "macs"] == 2 * 32 * 10
