"""A model from the user's file that the capture would miscount, or that crashed it, found
by an audit: each is refused before simulating as one line naming what to change (exit 2),
or, where desim can count it exactly, counted as its plain equivalent."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import torch
from torch import nn

import desim
from desim.errors import ConfigError
from desim.experiment import load_experiment
from mappings.capture import capture
from mappings.workload import checked_model
from tests.test_cli import assert_config_error
from tests.test_custom_model import BLOCK, HEAD, write_model
from tests.test_custom_model import desim as desim_cli


def refusal(path) -> ConfigError:
    """The ConfigError that checking the experiment's workload (as `desim check` and
    `desim run` both do, before simulating) raises."""
    with pytest.raises(ConfigError) as err:
        checked_model(load_experiment(path).workloads["dense"])
    return err.value


def layers_of(folder, body: str, **workload) -> pd.DataFrame:
    """layers.csv of one run of `body`'s model on the dense design."""
    folder.mkdir(exist_ok=True)
    return desim.run(write_model(folder, body, workload=workload or None)).layers


# A conv whose 4 x 8 x 8 output the forward reduces, then a linear head of 4 inputs.
REDUCED = """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
            self.fc = nn.Linear({inputs}, 10)

        def forward(self, x):
            y = self.relu(self.conv(x)).flatten(2)
            return self.fc({reduce})

    def make(num_classes):
        return Net()
    """


@pytest.mark.parametrize(("reduce", "inputs", "call"), [
    ("torch.max(y, dim=2)[0]", 4, "max"),
    ("y.max(2).values", 4, "max"),
    ("y.topk(2, dim=2).values.flatten(1)", 8, "topk"),
    ("torch.sort(y, dim=-1).values[:, :, 0]", 4, "sort"),
    ("F.max_pool2d(y.unflatten(2, (8, 8)), 8, return_indices=True)[0].flatten(1)", 4,
     "max_pool2d_with_indices"),
])
def test_a_call_that_returns_several_tensors_is_work_and_refused(tmp_path, reduce, inputs,
                                                                 call):
    """A call whose result is not a tensor was let through as shape arithmetic: a tuple of
    values and indices too, so a global max pool by torch.max ran with exit 0 and no pool
    anywhere in the counts."""
    err = refusal(write_model(tmp_path, REDUCED.format(inputs=inputs, reduce=reduce)))
    assert err.key == "workload.model"
    assert f"the call '{call}' at net.py:" in err.message
    assert "computes outside a module" in err.message


def test_a_global_max_by_torch_max_is_refused_by_desim_run(tmp_path):
    path = write_model(tmp_path, REDUCED.format(inputs=4, reduce="torch.max(y, dim=2)[0]"))
    result = desim_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert_config_error(result, "exp.yaml: workload.model:", "the call 'max' at net.py:",
                        "use an nn.MaxPool2d module")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_splits_and_sizes_still_pass_the_check(tmp_path):
    """Calls that yield a tuple but compute nothing: chunk's halves, size()'s ints."""
    body = BLOCK.format(head=HEAD.replace("Linear(4", "Linear(2"), extra="pass", forward=(
        "n = x.size(); y = self.conv(x).chunk(2, 1)[0].reshape(n[0], 2, 8, 8)"))
    checked_model(load_experiment(write_model(tmp_path, body)).workloads["dense"])


DEAD = """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.fork = nn.Conv2d(3, 8, 3, padding=1), Fork()
            self.main, self.aux = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 64, 3, padding=1)
            self.head = nn.Sequential({head})

        def forward(self, x):
            a, b = self.fork(self.c0(x))
            {use_aux}
            return self.head(self.main(a))

    def make(num_classes):
        return Net()
    """


@pytest.mark.parametrize("use_aux", ["_unused = self.aux(b)",
                                     "n = self.aux(b).shape[0]  # its size alone"])
def test_a_layer_whose_output_reaches_no_loss_is_refused(tmp_path, use_aux):
    """No gradient reaches it, and the capture left a layer without one out, its FF too:
    a run with exit 0 and no row of it."""
    path = write_model(tmp_path, DEAD.format(head=HEAD, use_aux=use_aux))
    result = desim_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert_config_error(result, "exp.yaml: workload.model:", "layer 'aux' at net.py:",
                        "its output reaches no loss", "remove it or use it")


def test_the_capture_refuses_a_layer_no_gradient_reaches():
    """The capture's own guard (a built-in or a direct caller, which the fx check does not
    see): a layer off the loss's path is an error, not a layer left out."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.aux = nn.Linear(6, 10), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.aux(x)
            return self.used(x)

    with pytest.raises(ConfigError, match="layer 'aux': its output reaches no loss"):
        capture(Net(), torch.randn(2, 6), torch.tensor([1, 2]))


EVAL_BRANCH = """
    class Net(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.fc, self.fc2 = nn.Linear(192, num_classes), nn.Linear(192, num_classes)

        def forward(self, x):
            y = x.flatten(1)
            if not self.training:  # the deployed path computes more
                return torch.sigmoid(self.fc2(torch.tanh(y)))
            return self.fc(y)

    def make(num_classes):
        return Net(num_classes)
    """


def test_an_inference_checks_the_forward_it_captures(tmp_path):
    """An inference captures the eval-mode forward; the check had traced the training one,
    so the tanh and sigmoid of the eval path ran uncounted."""
    err = refusal(write_model(tmp_path, EVAL_BRANCH, workload={"inference": True}))
    assert "the call 'tanh' at net.py:" in err.message and "(and 1 more)" in err.message
    # trained, the model runs its training path, which computes only what is counted
    checked_model(load_experiment(write_model(tmp_path, EVAL_BRANCH)).workloads["dense"])


def test_a_training_path_that_fails_is_one_line_naming_the_call(tmp_path):
    """Its eval-mode forward takes the input; its training one does not: a RuntimeError
    traceback (exit 1) out of the check's run of the traced graph, from run and check."""
    path = write_model(tmp_path, """
        class Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.fc, self.fc2 = nn.Linear(192, num_classes), nn.Linear(32, num_classes)

            def forward(self, x):
                if self.training:
                    return self.fc2(x.flatten(1))
                return self.fc(x.flatten(1))

        def make(num_classes):
            return Net(num_classes)
        """)
    for command in (["check"], ["run", "--out", str(tmp_path / "out")]):
        assert_config_error(desim_cli(*command, str(path)),
                            "exp.yaml: workload.input_shape: model", "net.py:make'",
                            "cannot take inputs of shape [3, 8, 8] in training mode",
                            "the call 'fc2' at net.py:", "raised RuntimeError: mat1 and mat2")


KEYWORDS = """
    class Net(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.fork, self.body, self.add = Fork(), nn.Conv2d(4, 4, 3, padding=1), Add()
            self.head = nn.Sequential({head})

        def forward(self, x):
            a, b = self.fork(self.relu({relu_in}))
            return self.head({add})

    def make(num_classes):
        return Net(num_classes)
    """


def test_layers_called_with_keyword_arguments_count_as_called_positionally(tmp_path):
    """`conv(input=x)`, `relu(input=y)`, `add(a, b=b)` were IndexErrors in the capture's
    hooks (which read `args[0]`), from run and check; trained for an iteration, the batch
    norm's own check did too."""
    training = {"training": {"iterations": 2}, "data": "digits", "input_shape": [1, 8, 8]}
    positional = layers_of(tmp_path / "p", KEYWORDS.format(
        head=HEAD, relu_in="self.norm(self.conv(x))", add="self.add(self.body(a), b)"),
        **training)
    keywords = layers_of(tmp_path / "k", KEYWORDS.format(
        head=HEAD, relu_in="input=self.norm(input=self.conv(input=x))",
        add="self.add(self.body(input=a), b=b)"), **training)
    assert set(positional["layer"]) >= {"conv", "body", "head.2"}
    assert {"FF", "BP", "WG"} <= set(positional["phase"])
    pd.testing.assert_frame_equal(keywords, positional)
    assert desim_cli("check", str(tmp_path / "k" / "exp.yaml")).returncode == 0


def test_a_max_pool_returning_indices_is_refused_before_simulating(tmp_path):
    """`desim check` passed it and `desim run` crashed in the capture (a tuple has no
    numel)."""
    body = BLOCK.format(head=HEAD, extra="self.pool = nn.MaxPool2d(2, return_indices=True)",
                        forward="y = self.pool(self.conv(x))[0]")
    path = write_model(tmp_path, body)
    for command in (["check"], ["run", "--out", str(tmp_path / "out")]):
        assert_config_error(desim_cli(*command, str(path)), "exp.yaml: workload.model:",
                            "layer 'pool' is an nn.MaxPool2d with return_indices=True",
                            "use return_indices=False")


@pytest.mark.parametrize("where", ["factory", "forward"])
def test_sys_exit_in_the_model_is_one_line_not_a_silent_exit(tmp_path, where):
    """sys.exit(3) in the factory (or the forward) left desim at once, with code 3 and not a
    word; the file's import already said it."""
    body = BLOCK.format(head=HEAD, extra="pass", forward="import sys; sys.exit(3)")
    if where == "factory":
        body = "import sys\n\ndef make(num_classes):\n    sys.exit(3)\n"
    result = desim_cli("check", str(write_model(tmp_path, body)))
    assert_config_error(result, "exp.yaml: workload.", "SystemExit: 3")


def conv_net(folder, conv: str, head_inputs: int = 4) -> pd.DataFrame | ConfigError:
    """layers.csv of a run of one conv `conv` (its constructor's text) before a linear head,
    or the ConfigError that refused it."""
    body = BLOCK.format(head=HEAD.replace("Linear(4", f"Linear({head_inputs}"),
                        extra=f"self.c = {conv}", forward="y = self.c(x)")
    try:
        return layers_of(folder, body)
    except ConfigError as err:
        return err


@pytest.mark.parametrize(("padding", "numeric"), [
    ("'same'", "1"), ("'valid'", "0"), ("'same', dilation=2", "2, dilation=2")])
def test_same_and_valid_paddings_count_as_the_numbers_they_pad(tmp_path, padding, numeric):
    """Both were refused, though exactly a symmetric zero padding: 'same' (stride 1, an odd
    kernel) pads dilation * (kernel - 1) / 2 a side, 'valid' none."""
    named = conv_net(tmp_path / "s", f"nn.Conv2d(3, 4, 3, padding={padding})")
    assert isinstance(named, pd.DataFrame), named
    pd.testing.assert_frame_equal(
        named, conv_net(tmp_path / "n", f"nn.Conv2d(3, 4, 3, padding={numeric})"))


@pytest.mark.parametrize(("conv", "fragment"), [
    ("nn.Conv2d(3, 4, 2, padding='same')", "padding 'same' with kernel (2, 2) and dilation "
     "(1, 1) pads one side more than the other, which desim does not count"),
    ("nn.Conv2d(3, 4, (3, 1), padding='same')", "padding 'same' with kernel (3, 1) and "
     "dilation (1, 1) pads (1, 0), not the same along height and width"),
    ("nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect')", "padding mode 'reflect'"),
])
def test_a_padding_desim_does_not_count_is_refused(tmp_path, conv, fragment):
    err = conv_net(tmp_path, conv)
    assert isinstance(err, ConfigError) and err.key == "workload.model"
    assert fragment in err.message


def test_a_rectangular_kernel_counts_its_closed_form(tmp_path):
    """Strides, paddings and dilations are the same along both axes; a kernel need not be:
    K*C*R*S*P*Q*N nominal MACs in FF and WG (no BP: the conv reads the data)."""
    layers = conv_net(tmp_path, "nn.Conv2d(3, 4, (3, 1), bias=False)")
    conv = layers[layers["layer"] == "c"].set_index("phase")
    n, k, c, r, s, p, q = 2, 4, 3, 3, 1, 6, 8  # an 8 x 8 input
    for phase in ("FF", "WG"):
        assert conv.loc[phase, "macs"] == n * k * c * r * s * p * q == 3456


@pytest.mark.parametrize(("extra", "forward", "fragments"), [
    ("self.c = MyConv(3, 4, 3, padding=1)", "y = self.c(x)",
     ["layer 'c' is a MyConv, a subclass of nn.Conv2d; desim counts nn.Conv2d itself only",
      "so use nn.Conv2d"]),
    ("self.relu = nn.ReLU()", "y = self.relu(self.conv(x)).detach()",
     ["the call 'detach' at net.py:", "cuts the gradient, which desim does not model",
      "freeze those layers instead"]),
    ("self.relu = nn.ReLU()", "y = self.relu(self.conv(x)).data",
     ["the call 'data' at net.py:", "cuts the gradient, which desim does not model"]),
    ("self.c2 = nn.Conv2d(4, 4, 3, padding=1); self.relu = nn.ReLU(); "
     "self.c3 = nn.Conv2d(4, 4, 3, padding=1); self.c3.weight = self.c2.weight",
     "y = self.c3(self.relu(self.c2(self.conv(x))))",
     ["parameter 'c3.weight' is 'c2.weight' (weights tied between layers)",
      "give each layer weights of its own"]),
])
def test_what_the_capture_would_miscount_is_refused_for_what_it_is(tmp_path, extra, forward,
                                                                 fragments):
    """A subclass of nn.Conv2d was refused as a functional conv2d ("use an nn.Conv2d
    module"), a detach as a computation; tied weights were counted as two layers' own."""
    body = "class MyConv(nn.Conv2d):\n    pass\n\n" + textwrap.dedent(
        BLOCK.format(head=HEAD, extra=extra, forward=forward))
    err = refusal(write_model(tmp_path, body))
    assert err.key == "workload.model"
    for fragment in fragments:
        assert fragment in err.message, err.message


def test_a_layer_run_with_gradients_off_is_refused(tmp_path):
    """`torch.no_grad()` inside the forward: the layer gets no gradient, where the capture
    counted its BP and WG (an audit's model: 1.1 M processed MACs of WG that never run,
    exit 0). fx does not see the context, so the capture refuses it (as `desim check`)."""
    body = """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.side = nn.Conv2d(4, 4, 3, padding=1)
                self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                          nn.Linear(4, 10))

            def forward(self, x):
                y = self.conv(x)
                with torch.no_grad():
                    y = self.side(y)
                return self.head(y)

        def make(num_classes):
            return Net()
        """
    with pytest.raises(ConfigError, match="layer 'side' runs with gradients off"):
        desim.run(write_model(tmp_path, body))


@pytest.mark.parametrize("layers, named", [
    ("nn.Flatten(), nn.Linear(192, width), nn.ReLU(), nn.Linear(width, num_classes)",
     "layer '1' (Linear) has no weights, shape [0, 192]"),
    ("nn.Conv2d(3, width, 3), nn.Flatten(), nn.Linear(0, num_classes)",
     "layer '0' (Conv2d) has no weights, shape [0, 3, 3, 3]"),
])
def test_a_layer_of_zero_features_is_refused_before_the_capture(tmp_path, layers, named):
    """`nn.Linear(192, 0)` runs in torch; its empty maps failed the capture with a
    RuntimeError's traceback (a model argument of 0)."""
    path = write_model(tmp_path, f"""
        def make(num_classes, width=0):
            return nn.Sequential({layers})
        """)
    err = refusal(path)
    assert err.key == "workload.model"
    assert err.message == (f"model '{tmp_path / 'net.py'}:make': {named}: 0 channels or "
                           "features (a model argument of 0?)")
