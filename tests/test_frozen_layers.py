"""Frozen layers (transfer learning's fixed ones, `requires_grad` off) and the models a
training iteration cannot take: a frozen layer computes no weight gradient and gets no
update; a layer no gradient reaches (frozen, as is every layer before it) runs FF alone.
A model whose every parameter is frozen, one with no layer for the PE array, and one that
calls a layer module twice are refused before any capture."""

from __future__ import annotations

import pandas as pd
import pytest
from test_custom_model import write_model

from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.runner import run_file
from mappings.workload import checked_model

# Three linear layers on an 8 x 8 x 3 input; `frozen` lists the Sequential indices of the
# layers whose weights are frozen (0, 2, 4: the three linears).
MLP = """
    def make(num_classes):
        m = nn.Sequential(nn.Flatten(), nn.Linear(192, 32, bias=False), nn.ReLU(),
                          nn.Linear(32, 32, bias=False), nn.ReLU(),
                          nn.Linear(32, num_classes, bias=False))
        for i in {frozen}:
            m[1 + i].weight.requires_grad_(False)
        return m
    """


def phases(tmp_path, frozen: list[int], **workload) -> pd.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_model(tmp_path, MLP.format(frozen=frozen), workload=workload or None)
    run_file(path, tmp_path / "out")
    return pd.read_csv(tmp_path / "out" / "layers.csv", dtype={"layer": str})


def by_layer(layers: pd.DataFrame) -> dict[str, set[str]]:
    """The phases of each linear layer (its update, WU, on the vector unit included)."""
    linear = layers[layers["layer"].isin(set(layers[layers["unit"] == "pe_array"]["layer"]))]
    return {name: set(rows["phase"]) for name, rows in linear.groupby("layer")}


def test_unfrozen_every_layer_trains(tmp_path):
    assert by_layer(phases(tmp_path, [])) == {"1": {"FF", "WG"}, "3": {"FF", "BP", "WG"},
                                             "5": {"FF", "BP", "WG"}}


def test_a_frozen_first_layer_runs_ff_alone_and_the_rest_train(tmp_path):
    """Fine-tuning the layers after the first: the first layer's weight gradient (192 x 32
    x batch 2 MACs) is not computed, nor the second's input gradient (nothing before it
    trains); the first layer's FF is what it was."""
    frozen = phases(tmp_path / "a", [0])
    trained = phases(tmp_path / "b", [])
    assert by_layer(frozen) == {"1": {"FF"}, "3": {"FF", "WG"}, "5": {"FF", "BP", "WG"}}
    first = [(layers[(layers["layer"] == "1") & (layers["phase"] == "FF")])
             [["macs", "effectual_macs"]].to_numpy().tolist() for layers in (frozen, trained)]
    assert first[0] == first[1] == [[192 * 32 * 2, 192 * 32 * 2]]


def test_two_frozen_layers_leave_the_last_its_ff_and_wg(tmp_path):
    """No gradient reaches the second layer's input or output: no BP there, and none for
    the ReLUs between the frozen layers; the last layer's input needs none either."""
    layers = phases(tmp_path, [0, 2])
    assert by_layer(layers) == {"1": {"FF"}, "3": {"FF"}, "5": {"FF", "WG"}}
    assert "BP" not in set(layers[layers["unit"] == "vector_unit"]["phase"])


def test_a_frozen_middle_layer_passes_the_gradient_on_without_its_own(tmp_path):
    assert by_layer(phases(tmp_path, [2])) == {"1": {"FF", "WG"}, "3": {"FF", "BP"},
                                              "5": {"FF", "BP", "WG"}}


def test_a_frozen_layer_gets_no_weight_update(tmp_path):
    layers = phases(tmp_path, [2], weight_update="sgd")
    assert by_layer(layers) == {"1": {"FF", "WG", "WU"}, "3": {"FF", "BP"},
                                "5": {"FF", "BP", "WG", "WU"}}


def test_a_wholly_frozen_model_is_refused_in_training_and_runs_its_inference(tmp_path):
    path = write_model(tmp_path, MLP.format(frozen=[0, 2, 4]))
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        checked_model(load_experiment(path).workloads["dense"])
    path = write_model(tmp_path, MLP.format(frozen=[0, 2, 4]), workload={"inference": True})
    run_file(path, tmp_path / "out")
    layers = pd.read_csv(tmp_path / "out" / "layers.csv", dtype={"layer": str})
    assert by_layer(layers) == {"1": {"FF"}, "3": {"FF"}, "5": {"FF"}}


@pytest.mark.parametrize("body, message", [
    ("""
    def make(num_classes):
        return nn.Sequential(nn.Flatten(), nn.ReLU())
    """, "has no nn.Conv2d, nn.Linear or MatMul layer: nothing for the PE array to compute"),
    ("""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.r1, self.r2 = nn.ReLU(), nn.ReLU()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
        def forward(self, x):
            return self.head(self.r2(self.conv(self.conv(self.r1(self.stem(x))))))
    def make(num_classes):
        return Net()
    """, "layer 'conv' is called 2 times in one forward pass; desim captures a layer module "
         "once, so give each call a module of its own"),
    ("""
    def make(num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(192, num_classes)).double()
    """, "has parameters in float64; the capture runs a float32 model"),
])
def test_a_model_the_capture_cannot_take_is_refused(tmp_path, body, message):
    """A shared conv called at one resolution lost its first call's input zeros (both calls
    counted with the second's maps); at two, the run failed with a traceback. A float64
    model was refused under workload.input_shape, with torch's dtype message."""
    path = write_model(tmp_path, body, workload={"num_classes": 192} if "ReLU())" in body
                       else None)
    with pytest.raises(ConfigError, match=message):
        checked_model(load_experiment(path).workloads["dense"])
