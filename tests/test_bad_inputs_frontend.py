"""Bad input to the workload's front end (the model, its data, a SCALE-Sim topology, the
pruning) that a fuzzing run found ending in a traceback or a silently wrong answer: each is
a ConfigError naming the key (the command line: one line, exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from desim.elaborate import elaborate
from desim.errors import ConfigError
from desim.experiment import load_experiment
from mappings.datasets import batch
from mappings.models import build_model
from mappings.pruning import prune_model
from mappings.scalesim import read_topology
from mappings.specs import PruningSpec, WorkloadSpec
from mappings.workload import capture_workload, checked_model, untrained
from tests.test_cli import QUICKSTART, ROOT, assert_config_error, desim

DENSE = ROOT / "configs" / "arch" / "dense.yaml"


def test_a_batch_norm_on_one_value_per_channel_is_refused_naming_the_layer():
    """Batch 1 on ResNet-18's ImageNet stem at 32 x 32 leaves layer 4 a 1 x 1 map: torch
    refuses to train its batch norms with a ValueError, which was a traceback."""
    result = desim("check", str(QUICKSTART), "--set", "workload.batch=1",
                   "--set", "workload.model_args={}")
    assert_config_error(result, "quickstart.yaml: workload.batch: batch norm "
                        "'features.10.body.1' sees one value per channel (batch 1 on a 1x1 "
                        "map, input [1, 512, 1, 1]) and cannot train; use a batch of 2 or more")
    # the capture says it too (the check takes min(batch, 2) images, the capture the batch)
    spec = WorkloadSpec(model="resnet18", batch=1, input_shape=[3, 32, 32])
    with pytest.raises(ConfigError, match="sees one value per channel") as err:
        capture_workload(spec, PruningSpec(method="dense"))
    assert err.value.key == "workload.batch"
    # two images train it, and the check's hooks are gone afterwards
    model = untrained(spec.model_copy(update={"batch": 2})).model
    assert all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("batch", [10**11, 2**62])
def test_a_batch_of_real_data_too_large_for_memory_is_refused(batch):
    """2^62 images' indices are more bytes than 64 bits count: numpy refuses them with a
    ValueError ("array is too big"), which was a traceback where 10^11 was this error."""
    spec = WorkloadSpec(model="lenet300", batch=batch, data="digits")
    with pytest.raises(ConfigError, match=f"lenet300 at batch {batch}, inputs \\[784\\]: one "
                       "training iteration does not fit in this machine's memory") as err:
        capture_workload(spec, PruningSpec(method="dense"))
    assert err.value.key == "workload.batch"


def experiment_file(folder: Path, workload: dict, pruning: dict | None = None) -> Path:
    """An experiment of `workload` on the dense design, written to folder/exp.yaml."""
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "x", "workload": workload, "baseline": "dense",
        "runs": [{"name": "dense", "arch": str(DENSE),
                  "pruning": pruning or {"method": "dense"}}]}))
    return path


@pytest.mark.parametrize("data", ["digits", "mnist"])
def test_a_flat_input_of_real_images_is_a_square_number_of_pixels(tmp_path, data):
    """The images are resized to side x side and flattened: [5] got 2 x 2 = 4 values, and
    `desim check` passed what `desim run` failed on (torch's "mat1 and mat2 shapes cannot
    be multiplied"); [8] silently dropped a pixel of 3 x 3."""
    for size, near in [(5, "4, 9"), (8, "4, 9"), (785, "784, 841")]:
        path = experiment_file(tmp_path, {"model": "lenet300", "input_shape": [size],
                                          "data": data})
        with pytest.raises(ConfigError, match=f"{data} images come as a flat vector of a "
                           f"square image's pixels .*, got {size} \\(nearest: {near}\\); use "
                           "data: random") as err:
            load_experiment(path)
        assert err.value.key == "workload.input_shape"
    for size in (1, 64, 784):
        load_experiment(experiment_file(tmp_path, {"model": "lenet300", "input_shape": [size],
                                                   "data": data}))
    load_experiment(experiment_file(tmp_path, {"model": "lenet300", "input_shape": [5],
                                               "data": "random"}))
    x, _ = batch(data, 3, (64,), 10)
    assert x.shape == (3, 64)


HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
          "Num Filter, Strides,\n")


@pytest.mark.parametrize("row, fragment", [
    # 9 PB of weight map (can't allocate), sizes whose bytes overflow 64 bits
    ("big, 34, 34, 3, 3, 1000, 1000000000000, 1,",
     "line 3: layer 'big' (inputs 1000 x 34 x 34, weights 1000000000000 x 1000 x 3 x 3) does "
     "not fit in this machine's memory"),
    ("big, 10000000, 10000000, 3, 3, 1000000, 16, 1,",
     "line 3: layer 'big' (inputs 1000000 x 10000000 x 10000000, weights 16 x 1000000 x 3 x 3) "
     "does not fit in this machine's memory"),
    (f"big, 34, 34, 3, 3, 3, {2**63}, 1,", "line 3: sizes must be less than 2^63"),
], ids=["petabytes", "overflowing", "2^63"])
def test_a_topology_layer_too_large_for_memory_is_refused_naming_the_csv_and_line(
        tmp_path, row, fragment):
    """A SCALE-Sim layer's maps are made whole (one byte an element): a layer too large was
    torch's allocator's RuntimeError traceback in `desim check`."""
    topology = tmp_path / "big.csv"
    topology.write_text(HEADER + "ok, 10, 10, 3, 3, 4, 8, 1,\n" + row + "\n")
    for packed in (False, True):
        with pytest.raises(ConfigError) as err:
            read_topology(topology, packed=packed)
        assert err.value.file == str(topology) and fragment in err.value.message
    # the spec's check says it too, naming the CSV
    with pytest.raises(ConfigError) as err:
        untrained(WorkloadSpec(scalesim_topology=str(topology)))
    assert str(err.value).startswith(f"{topology}: {fragment}")


def test_a_topology_without_its_header_row_is_refused(tmp_path):
    """The first row is read as the header: without one, the first layer was lost unsaid."""
    topology = tmp_path / "nohdr.csv"
    topology.write_text("conv1, 34, 34, 3, 3, 3, 16, 1,\nconv2, 34, 34, 3, 3, 3, 16, 1,\n")
    with pytest.raises(ConfigError, match="the header row is missing: line 1 is a layer "
                       r"\(conv1, 34, 34, 3, 3, 3, 16, 1,\), where a SCALE-Sim topology "
                       r"starts with the header row \(Layer name, IFMAP Height,") as err:
        read_topology(topology)
    assert err.value.file == str(topology)
    topology.write_text(HEADER + topology.read_text())
    assert [layer.name for layer in read_topology(topology)] == ["conv1", "conv2"]


def test_a_topology_field_past_the_eighth_is_refused_not_ignored(tmp_path):
    """SCALE-Sim's optional N:M sparsity field: read and ignored, a 2:4 (or any word) ran
    the layer dense without a word."""
    topology = tmp_path / "nm.csv"
    for extra in ("2:4", "banana"):
        topology.write_text(HEADER + f"conv1, 34, 34, 3, 3, 3, 16, 1, {extra},\n")
        with pytest.raises(ConfigError) as err:
            read_topology(topology)
        assert err.value.message == (
            f"line 2: a field past the 8 of SCALE-Sim's columns, '{extra}' (its N:M "
            "sparsity?), which desim does not model: a topology's layers run dense; remove it "
            "(N:M sparse weights: a model with pruning method n_m)")
    topology.write_text(HEADER + "conv1, 34, 34, 3, 3, 3, 16, 1, ,\n")  # an empty one: none
    assert [layer.name for layer in read_topology(topology)] == ["conv1"]


def test_an_unreadable_input_file_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """A file without read permission (the experiment, an arch, a model, a topology) was a
    PermissionError's traceback, exit 1; the same as a missing file now, exit 2."""
    from mappings.model_path import file_sha256
    from mappings.models.from_file import load_factory

    denied = {tmp_path / "exp.yaml", tmp_path / "net.py"}
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self in denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    for path in denied:
        path.write_text("x")
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigError) as err:
        load_experiment(tmp_path / "exp.yaml")
    assert str(err.value) == (f"{tmp_path / 'exp.yaml'}: cannot read it (Permission denied); "
                              "expected a YAML file")
    for read in (load_factory, file_sha256):
        with pytest.raises(ConfigError, match=r"net.py: cannot read it \(Permission denied\); "
                           "expected a Python file defining the model"):
            read(f"{tmp_path / 'net.py'}:net")


DROPBACK_LENET = ROOT / "configs" / "experiments" / "dropback_lenet.yaml"


@pytest.mark.parametrize("overrides, key, fragment", [
    # one class made every label 0: a trained accuracy of 1.0
    (["workload.num_classes=1"], "workload.num_classes",
     "mnist has 10 classes (labels 0 to 9), so the model needs at least 10, got 1; use "
     "data: random for fewer classes"),
    (["workload.data=digits", "workload.num_classes=9"], "workload.num_classes",
     "digits has 10 classes"),
    # the model's count was taken silently over the workload's
    (["workload.model_args={num_classes: 5}"], "workload.model_args.num_classes",
     "5 contradicts workload.num_classes 10; give the number of classes once, as "
     "workload.num_classes"),
    (["workload.num_classes=12", "workload.model_args={num_classes: 10}"],
     "workload.model_args.num_classes", "10 contradicts workload.num_classes 12"),
])
def test_the_classes_cover_the_data_and_agree_with_the_model(overrides, key, fragment):
    with pytest.raises(ConfigError) as err:
        load_experiment(DROPBACK_LENET, overrides)
    assert err.value.key == key and fragment in err.value.message


def test_the_classes_the_data_and_the_model_agree_on_are_taken():
    for overrides in (["workload.num_classes=12"], ["workload.model_args={num_classes: 10}"]):
        load_experiment(DROPBACK_LENET, overrides)
    load_experiment(QUICKSTART, ["workload.data=random", "workload.num_classes=3"])
    # labels are the set's own: 0 to 9, each of them
    _, y = batch("digits", 200, (64,), 10)
    assert set(y.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="digits has 10 classes, more than the model's 1"):
        batch("digits", 2, (64,), 1)


@pytest.mark.parametrize("pruning, key, fragment", [
    # k 0 was reported as a compression of 266,200; 10^12 was clipped to the weights
    ("{method: dropback, k: 0, skip_last_linear: false}", "runs.1.pruning.k",
     "greater than 0"),
    ("{method: dropback, k: 1000000000000, skip_last_linear: false}", "runs.1.pruning.k",
     "k = 1,000,000,000,000 is more weights than DropBack ranks: the layers it prunes have "
     "266,200"),
    ("{method: dropback, k: 266201, skip_last_linear: false}", "runs.1.pruning.k",
     "the layers it prunes have 266,200"),
    ("{method: dropback, sparsity: 0.999999999, skip_last_linear: false}",
     "runs.1.pruning.sparsity", "sparsity 0.999999999 tracks none of the 266,200 weights"),
])
def test_dropback_tracks_at_least_one_weight_and_at_most_those_it_ranks(pruning, key,
                                                                          fragment):
    """Said by `desim check` (the untrained model's shapes), before 600 iterations."""
    with pytest.raises(ConfigError) as err:
        elaborate(load_experiment(DROPBACK_LENET, [f"runs.1.pruning={pruning}"]))
    assert err.value.key == key and fragment in err.value.message


def test_dropback_tracks_every_weight_it_ranks_when_k_is_all_of_them():
    spec = PruningSpec(method="dropback", k=266_200, skip_last_linear=False)
    model = build_model("lenet300")
    masks = prune_model(model, spec)
    assert sum(int(m.sum()) for m in masks.values()) == 266_200
    with pytest.raises(ConfigError, match="more weights than DropBack ranks"):
        prune_model(model, spec.model_copy(update={"k": 266_201}))


NET_CLASS = '''
from __future__ import annotations

from torch import nn


class Net(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, num_classes))

    def forward(self, x):
        return self.body(x)


class NotAModule:
    pass
'''


def test_an_nn_module_class_is_a_model_factory(tmp_path):
    """`file.py:Net` was desim's own misuse of pydantic's validate_call (for functions only),
    said as if the user's class had raised it. Its constructor is the factory: its arguments
    are checked as a function's are, and it gets the workload's num_classes."""
    (tmp_path / "net.py").write_text(NET_CLASS)
    workload = {"model": "net.py:Net", "model_args": {"width": 4}, "input_shape": [3, 8, 8],
                "num_classes": 10, "data": "random", "batch": 2}
    spec = load_experiment(experiment_file(tmp_path, workload)).spec.workload
    model, _ = checked_model(spec)
    assert type(model).__name__ == "Net"
    assert [tuple(p.shape) for p in model.parameters()] == [(4, 3, 3, 3), (4,), (10, 4), (10,)]
    assert [layer.name for layer in capture_workload(spec, PruningSpec(method="dense")).layers
            ] == ["body.0", "body.4"]
    for model_args, key, fragment in [
            ({"width": "4"}, "workload.model_args.width", "input should be a valid integer"),
            ({"width": 4, "depth": 2}, "workload.model_args.depth",
             "model 'Net' of '" + str(tmp_path / "net.py") + "' takes no argument 'depth'; "
             "it takes width, num_classes")]:
        spec = spec.model_copy(update={"model_args": model_args})
        with pytest.raises(ConfigError) as err:
            checked_model(spec)
        assert err.value.key == key and fragment in err.value.message
    spec = spec.model_copy(update={"model": spec.model.replace(":Net", ":NotAModule"),
                                   "model_args": {}})
    with pytest.raises(ConfigError, match="'NotAModule' of .* is a class that is not an "
                       "nn.Module; expected an nn.Module class or a function") as err:
        checked_model(spec)
    assert err.value.key == "workload.model"


@pytest.mark.parametrize("data", ["digits", "mnist"])
def test_a_training_measures_accuracy_on_at_most_the_images_held_out(data):
    """`training.eval_samples` beyond the data set's held-out fifth was capped without a
    word (10^9 asked, 1,000 measured); the counts the check uses are the data sets' own."""
    from mappings.datasets import held_out
    from mappings.specs import DATASET_HELD_OUT

    images, _ = held_out(data, 10**6, (1, 8, 8), 10)
    assert len(images) == DATASET_HELD_OUT[data]
    workload = {"model": "lenet300", "data": data, "input_shape": [784],
                "training": {"iterations": 2, "eval_samples": DATASET_HELD_OUT[data]}}
    WorkloadSpec.model_validate(workload)  # all of them: fine
    workload["training"]["eval_samples"] += 1
    with pytest.raises(ValueError, match=rf"training\.eval_samples: {data} holds out "
                                         rf"{DATASET_HELD_OUT[data]} images to measure "
                                         rf"accuracy on, fewer than {DATASET_HELD_OUT[data] + 1}"):
        WorkloadSpec.model_validate(workload)


@pytest.mark.parametrize("text, fragment", [
    # the file's line, blank lines counted (it said line 3 for line 6)
    (HEADER + "conv1, 34, 34, 3, 3, 3, 16, 1,\n\n\n\nconv2, 34, 34, 3, 3, 16, 0, 1,\n",
     "line 6: sizes must be positive"),
    # another tool's column order was read as SCALE-Sim's (C and K swapped)
    (HEADER.replace("Channels, Num Filter", "Num Filter, Channels")
     + "conv1, 34, 34, 3, 3, 16, 3, 1,\n",
     "line 1: the header names Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter "
     "Width, Num Filter, Channels, Strides; expected SCALE-Sim's columns, in order"),
    # int() read "1_0" as 10, and other scripts' digits
    (HEADER + "conv1, 34, 34, 3, 3, 3, 1_0, 1,\n", "line 2: the fields after the layer name "
                                                  "must be integers"),
    (HEADER + "conv1, 34, 34, 3, 3, 3, 16, 1,\nconv1, 32, 32, 3, 3, 16, 16, 1,\n",
     "line 3: layer name 'conv1' is another row's too; expected a name of its own"),
    (HEADER + ", 34, 34, 3, 3, 3, 16, 1,\n", "line 2: layer name '' is empty"),
], ids=["blank lines", "columns swapped", "underscore", "duplicate", "empty name"])
def test_a_topology_row_is_read_as_scalesim_writes_it(tmp_path, text, fragment):
    topology = tmp_path / "t.csv"
    topology.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_topology(topology)
    assert err.value.file == str(topology) and fragment in err.value.message
