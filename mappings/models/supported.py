"""What the capture counts, and the check that a model computes nothing else.

The capture (`mappings.capture`) sees a model's work only through hooks on its modules:
`nn.Conv2d`, `nn.Linear`, `MatMul` and the vector layers of `VECTOR_KINDS`. Work done any
other way (`x + y`, `torch.relu(x)`, `F.conv2d`, `x @ w`, an `nn.LSTM`) runs in the real
pass but is in no count: the simulation would be silently too cheap. `refuse_uncounted`
traces the model with `torch.fx` and refuses it, naming the layer or the call and what to
write instead, unless every step is a counted module or only moves data (a reshape, a
transpose, indexing, a container). It also refuses what the capture would miscount: a
counted layer whose output reaches no loss, weights tied between layers, a layer called
twice, a gradient cut by `detach`. `make_paddings_numeric` gives a conv's 'same' or 'valid'
padding as the numbers it pads, which the capture counts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from desim.errors import ConfigError, interrupts_kept, raise_if_interrupted
from mappings.capture import VECTOR_KINDS
from mappings.models.common import Fork, MatMul

# Modules the capture counts: their work is in the simulation.
COUNTED: frozenset[type] = frozenset({nn.Conv2d, nn.Linear, MatMul, *VECTOR_KINDS})
# Modules that compute nothing desim models, allowed. nn.Dropout: the zeros it makes reach
# the next layer's input, which the capture counts; its mask multiply is not counted, as in
# the built-in VGG-16 and MobileNetV2.
ROUTING_MODULES: frozenset[type] = frozenset({nn.Identity, nn.Flatten, nn.Unflatten,
                                              nn.Dropout})
# Calls and methods that only reshape, reorder, index or split a tensor: no arithmetic.
ROUTING_CALLS: frozenset[str] = frozenset({
    "flatten", "unflatten", "view", "view_as", "reshape", "reshape_as", "permute",
    "transpose", "t", "contiguous", "size", "dim", "getattr", "getitem", "unsqueeze",
    "squeeze", "chunk", "split", "unbind", "expand", "expand_as",
})

COMMON = "from mappings.models.common"
# What to write instead of a call desim does not see, by the call's name.
CALL_HINTS: dict[str, str] = {
    **dict.fromkeys(("add", "iadd", "radd"),
                    f"an Add module ({COMMON}), with a Fork where one tensor feeds both "
                    "branches (see mappings/models/resnet.py)"),
    "relu": "an nn.ReLU module",
    **dict.fromkeys(("relu6", "hardtanh"), "an nn.ReLU6 module"),
    "gelu": "an nn.GELU module",
    "softmax": f"an nn.Softmax module, or ScaledSoftmax ({COMMON}) for attention's scaled one",
    **dict.fromkeys(("matmul", "bmm", "mm", "einsum"),
                    f"a MatMul module ({COMMON}; see mappings/models/transformer.py)"),
    "conv2d": "an nn.Conv2d module",
    "linear": "an nn.Linear module",
    **dict.fromkeys(("max_pool2d", "max_pool2d_with_indices"),
                    "an nn.MaxPool2d module (return_indices off)"),
    "max": "an nn.MaxPool2d module (over the whole map for a global max pool)",
    "avg_pool2d": "an nn.AvgPool2d module",
    "adaptive_avg_pool2d": "an nn.AdaptiveAvgPool2d module",
    "mean": "nn.AdaptiveAvgPool2d(1) then nn.Flatten() for a global average pool",
    "batch_norm": "an nn.BatchNorm2d module",
    "layer_norm": "an nn.LayerNorm module",
    "dropout": "an nn.Dropout module",
    **dict.fromkeys(("cat", "stack", "concat", "concatenate"),
                    "no concatenation: desim models none; restructure the model "
                    "without it"),
    **dict.fromkeys(("truediv", "div"), f"ScaledSoftmax ({COMMON}) if it scales attention "
                    "scores; desim models no other element-wise division"),
}
# What to write instead of a module desim does not model, by its type's name.
MODULE_HINTS: dict[str, str] = {
    **dict.fromkeys(("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"),
                    "write its gates as nn.Linear layers, or leave it out"),
    "Embedding": "an embedding is a table look-up desim does not model; feed the model "
                 "embedded inputs (input_shape: [sequence, dim])",
    "MultiheadAttention": f"nn.Linear projections with MatMul and ScaledSoftmax ({COMMON}), "
                          "as mappings/models/transformer.py writes attention",
    **dict.fromkeys(("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                     "ConvTranspose3d"),
                    "desim models 2-D convolutions (nn.Conv2d) only"),
    **dict.fromkeys(("Sigmoid", "Tanh", "SiLU", "LeakyReLU", "ELU", "Hardswish", "Mish"),
                    "desim models the activations nn.ReLU, nn.ReLU6 and nn.GELU"),
}


# Calls that do no arithmetic but change what the capture would see, with why, by name.
_CUTS_THE_GRADIENT = ("cuts the gradient, which desim does not model (no gradient would "
                      "reach the layers before it: they would be left out of the counts); "
                      "remove it, or freeze those layers instead (requires_grad off: a "
                      "frozen first part of a model runs FF alone)")
CALL_REFUSALS: dict[str, str] = {"detach": _CUTS_THE_GRADIENT, "data": _CUTS_THE_GRADIENT}


class _Tracer(fx.Tracer):
    """Stops at counted and routing modules (the custom ones of mappings.models.common
    included, and subclasses of them, refused by `_problem`) and at every torch.nn module,
    so each is one node to judge; traces through the model's own modules and containers.
    Records stack traces, so that a refused call names its line."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, tuple(COUNTED | ROUTING_MODULES))
                or super().is_leaf_module(m, qualname))


def _holds_tensor(value: Any) -> bool:
    """Whether `value` is a tensor or a tuple, list or dict holding one (`torch.max(x, 1)`'s
    values and indices: work, where a size or a tuple of sizes is none)."""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, tuple | list):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


@dataclass
class _Values:
    """What each node of a traced graph yields on an example input: a tensor (`tensor`), or
    anything holding one (`holds`: a tuple of tensors too). Shape arithmetic, as
    `x.shape[0] * 4`, yields ints: no work to count."""

    tensor: dict[fx.Node, bool]
    holds: dict[fx.Node, bool]


def _evaluate(graph: fx.GraphModule, example: torch.Tensor, label: str,
              mode: str) -> _Values:
    """`_Values` of `graph` on `example`. A call that fails is a ConfigError naming it: the
    forward traced in `mode` may differ from the one run in eval mode on `input_shape` (a
    branch on `self.training`)."""
    values = _Values({}, {})

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            try:
                result = super().run_node(n)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - the user's forward
                what = repr(str(n.target)) if n.op == "call_module" else repr(_call_name(n))
                text = str(err).strip()
                raise ConfigError(
                    f"model {label} cannot take inputs of shape {list(example.shape[1:])} "
                    f"in {mode} mode (the mode the capture runs it in): the call {what}"
                    f"{_where(n)} raised {type(err).__name__}: "
                    f"{text.splitlines()[0] if text else '(no message)'}",
                    key="workload.input_shape") from None
            values.tensor[n] = isinstance(result, torch.Tensor)
            values.holds[n] = _holds_tensor(result)
            return result

    recorder = Recorder(graph)
    recorder.extra_traceback = False  # the message is ours, whole
    with torch.no_grad():
        recorder.run(example)
    return values


def _call_name(node: fx.Node) -> str:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return name.rstrip("_") or name  # an in-place method as its plain one (add_: add)


def _where(node: fx.Node) -> str:
    """`file.py:line` of the model's source that made `node`, if the trace recorded it."""
    torch_dir = str(Path(torch.__file__).parent)
    frames = [(path, line) for path, line
              in re.findall(r'File "([^"]+)", line (\d+)', node.stack_trace or "")
              if not path.startswith(torch_dir)]
    if not frames:
        return ""
    path, line = frames[-1]
    return f" at {path.rsplit('/', 1)[-1]}:{line}"


def _problem(node: fx.Node, modules: dict[str, nn.Module], holds_tensor: dict[fx.Node, bool],
             allowed: Collection[str]) -> str | None:
    """Why `node` would be work the capture does not count, else None. A call passes if it
    only moves data (`ROUTING_CALLS`) or yields no tensor (shape arithmetic); one that
    yields a tuple of tensors (`torch.max(x, 1)`, `x.topk(4)`, `torch.sort`) computes."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        kind = type(module)
        if kind.__name__ in allowed:
            return None
        if kind in COUNTED or kind in ROUTING_MODULES:
            if getattr(module, "return_indices", False):
                return (f"layer {node.target!r} is an nn.{kind.__name__} with "
                        "return_indices=True, whose indices desim does not model (the "
                        "capture reads one output); use return_indices=False")
            return None
        base = next((b for b in kind.__mro__ if b in COUNTED | ROUTING_MODULES), None)
        if base is not None:
            name = f"nn.{base.__name__}" if base.__module__.startswith("torch.nn") \
                else base.__name__
            return (f"layer {node.target!r} is a {kind.__name__}, a subclass of {name}; "
                    f"desim counts {name} itself only (a subclass may compute otherwise), "
                    f"so use {name}")
        hint = MODULE_HINTS.get(kind.__name__, "write it with the modelled layers")
        return (f"layer {node.target!r} is an nn.{kind.__name__}, which desim does not model "
                f"({hint})")
    if node.op not in ("call_function", "call_method"):
        return None  # the input, a parameter read, the output
    name = _call_name(node)
    if name == "getattr" and len(node.args) > 1 and node.args[1] == "data":
        name = "data"  # `x.data`: the tensor without its gradient, as `x.detach()`
    if name in CALL_REFUSALS and name not in allowed:
        return f"the call {name!r}{_where(node)} {CALL_REFUSALS[name]}"
    if name in ROUTING_CALLS or name in allowed or not holds_tensor.get(node, True):
        return None
    hint = CALL_HINTS.get(name, "a module of the modelled layers (nn.Conv2d, nn.Linear, "
                                f"MatMul, nn.ReLU, Add, Fork, ... {COMMON})")
    return (f"the call {name!r}{_where(node)} computes outside a module, where desim's "
            f"capture does not see it (it would be left out of the counts); use {hint}")


# The name `allowed` takes for a tensor handed to several consumers without a `Fork`.
FANOUT = "fanout"


def _fanout(node: fx.Node, modules: dict[str, nn.Module], is_tensor: dict[fx.Node, bool]
            ) -> str | None:
    """Why `node`'s tensor going to several consumers would be work the capture does not
    count, else None. In BP their gradients are summed into one: a pass over the tensor
    that the capture counts only where a `Fork` hands it on. The model's input (data: no
    gradient), a parameter (`get_attr`) and a Fork's own output are free of it."""
    if node.op in ("placeholder", "get_attr", "output") or not is_tensor.get(node, True):
        return None
    if node.op == "call_module" and isinstance(modules[str(node.target)], Fork):
        return None
    users = [u.name for u in node.users if is_tensor.get(u, True) or u.op == "output"]
    if len(users) < 2:
        return None
    return (f"the tensor {node.name!r}{_where(node)} goes to {len(users)} consumers "
            f"({', '.join(users)}) without a Fork: in BP their gradients are summed, which "
            f"desim counts only where a Fork ({COMMON}) hands a tensor to two branches "
            "(see mappings/models/resnet.py)")


# Layers the capture keeps one record of, by module name: a second call would replace the
# first call's maps (`mappings.capture`).
RECORDED_ONCE = (nn.Conv2d, nn.Linear, MatMul)


def _shared_layers(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> list[str]:
    """Why each conv, linear or MatMul module called more than once in a forward pass would
    be miscounted: its calls' maps replace one another (at two resolutions the run failed,
    at one its first call's input zeros were lost)."""
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        target = str(node.target)
        if node.op == "call_module" and isinstance(modules[target], RECORDED_ONCE):
            calls[target] = calls.get(target, 0) + 1
    return [f"layer {name!r} is called {n} times in one forward pass; desim captures a "
            "layer module once, so give each call a module of its own (weights shared "
            "between them are not modelled)" for name, n in calls.items() if n > 1]


def _unused_layers(graph: fx.GraphModule, modules: dict[str, nn.Module],
                   holds_tensor: dict[fx.Node, bool]) -> list[str]:
    """Why each counted layer whose output reaches no loss would be miscounted: no gradient
    reaches it, and the capture leaves a layer without one out, its FF too. An output
    read for its shape alone (`y.shape[0]`) reaches nothing."""
    live: set[fx.Node] = set()
    stack = [node for node in graph.graph.nodes if node.op == "output"]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        if node.op == "output" or holds_tensor.get(node, True):
            stack.extend(node.all_input_nodes)
    return [f"layer {node.target!r}{_where(node)}: its output reaches no loss (no gradient "
            "reaches it, so desim's capture would leave it out); remove it or use it"
            for node in graph.graph.nodes if node.op == "call_module" and node not in live
            and type(modules[str(node.target)]) in COUNTED]


def _tied_parameters(model: nn.Module) -> list[str]:
    """Why each parameter that two layers share (`b.weight = a.weight`) would be miscounted:
    the capture takes each layer's weights as its own (their bytes, gradient and update
    counted twice), as it would for a layer called twice (`_shared_layers`)."""
    names: dict[int, list[str]] = {}
    for prefix, module in model.named_modules():  # (a module under two names: once)
        for name, param in module.named_parameters(prefix=prefix, recurse=False):
            names.setdefault(id(param), []).append(name)
    return [f"parameter {tied[1]!r} is {tied[0]!r} (weights tied between layers); desim "
            "captures each layer's weights as its own, so give each layer weights of its own "
            "(weights shared between them are not modelled)"
            for tied in names.values() if len(tied) > 1]


def _numeric_padding(module: nn.Conv2d, name: str) -> tuple[int, ...]:
    """The conv's zero padding as numbers a side: 'valid' is none, and 'same' (stride 1)
    pads dilation * (kernel - 1) / 2 a side where that is whole, symmetrically, as torch
    does. 'same' with an even kernel pads one side more, and a padding mode other than
    zeros pads with other values: neither is counted."""
    padding, mode = module.padding, module.padding_mode
    if mode != "zeros":
        raise ConfigError(f"layer {name}: padding mode {mode!r} is not supported (zero "
                          "padding only)", key="workload.model")
    if padding == "valid":
        return (0,) * len(module.kernel_size)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise ConfigError(f"layer {name}: padding 'same' with kernel "
                              f"{tuple(module.kernel_size)} and dilation "
                              f"{tuple(module.dilation)} pads one side more than the other, "
                              "which desim does not count (symmetric zero padding only); use "
                              "an odd kernel or a numeric padding", key="workload.model")
        if len({t // 2 for t in total}) > 1:
            raise ConfigError(f"layer {name}: padding 'same' with kernel "
                              f"{tuple(module.kernel_size)} and dilation "
                              f"{tuple(module.dilation)} pads {tuple(t // 2 for t in total)}, "
                              "not the same along height and width, which desim does not "
                              "count; use a square kernel (at equal dilations) or a numeric "
                              "padding", key="workload.model")
        return tuple(t // 2 for t in total)
    return tuple(padding)


def make_paddings_numeric(model: nn.Module) -> None:
    """Each conv's padding as the numbers it pads (`_numeric_padding`: 'same' and 'valid'
    made numbers, exactly equal), for every reader of `module.padding` (the capture, which
    takes numbers only, ReLU speculation, a design's im2col); one desim does not count is a
    ConfigError here."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            module.padding = _numeric_padding(module, name)


def refuse_empty_layers(model: nn.Module, label: str) -> None:
    """A ConfigError (key `workload.model`) for a conv or linear layer with no weights (0
    channels or features: `nn.Linear(784, 0)` runs in torch, and its empty maps failed the
    capture with a traceback)."""
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, RECORDED_ONCE) and isinstance(weight, torch.Tensor) \
                and weight.numel() == 0:
            raise ConfigError(f"model {label}: layer {name!r} ({type(module).__name__}) has "
                              f"no weights, shape {list(weight.shape)}: 0 channels or "
                              "features (a model argument of 0?)", key="workload.model")


def refuse_untrainable(model: nn.Module, label: str, training: bool) -> None:
    """A ConfigError (key `workload.model`) for a model with no conv, linear or MatMul layer
    (nothing for the PE array), or, in `training`, with every parameter frozen (no gradient
    anywhere: no BP, no WG; the capture's backward pass failed)."""
    if not any(isinstance(m, RECORDED_ONCE) for m in model.modules()):
        raise ConfigError(f"model {label} has no nn.Conv2d, nn.Linear or MatMul layer: "
                          "nothing for the PE array to compute", key="workload.model")
    if training and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model {label}: every parameter is frozen (requires_grad off), so "
                          "a training iteration computes no gradient; unfreeze the layers "
                          "to train (frozen ones run FF alone), or set workload.inference",
                          key="workload.model")


@functools.cache
def _import_what_tracing_imports() -> None:
    """Trace a model of one layer first, outside `refuse_uncounted`'s `except`: the first
    trace imports some 1,200 modules lazily (torch._dynamo, torch._inductor, sympy: the
    stack traces it records), and a Ctrl-C among them raised an error of torch's, which that
    `except` reported as the user's model being untraceable."""
    with interrupts_kept():
        fx.GraphModule(_OneLayer(), _Tracer().trace(_OneLayer()))


class _OneLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).flatten(1)


def refuse_uncounted(model: nn.Module, label: str, shape: tuple[int, ...],
                     allowed: Collection[str] = (), training: bool = True) -> None:
    """A ConfigError (key `workload.model`) if `model` computes anything the capture does not
    count: a module type it does not model, a function or tensor method that does
    arithmetic (see the module's docstring), a tensor handed to several consumers
    without a Fork (`_fanout`), a layer whose output reaches no loss, a layer called twice
    or weights tied between layers. `shape`: one input without the batch, run
    once to tell tensor work from shape arithmetic. `allowed`: names of calls or module
    types let through (a built-in's deliberate, documented exceptions). `training`: the
    mode the capture runs the model in, the forward checked (one that branches on
    `self.training` computes otherwise in the other). A model torch.fx cannot trace is
    refused too: desim cannot then tell what it computes."""
    mode = "training" if training else "eval"
    _import_what_tracing_imports()
    was_training = model.training
    model.train(training)
    try:
        with interrupts_kept():
            graph = fx.GraphModule(model, _Tracer().trace(model))
    except (Exception, SystemExit) as err:  # noqa: BLE001 - any tracing failure: said
        raise_if_interrupted()  # a Ctrl-C that surfaced as another error: no fault of its
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"model {label}: torch.fx cannot trace it in {mode} mode ({type(err).__name__}: "
            f"{first}), so desim cannot check that its capture counts all of its work; write "
            "forward without Python control flow on tensor values",
            key="workload.model") from None
    finally:
        model.train(was_training)
    raise_if_interrupted()  # one a library caught while tracing imported it (mpmath does)
    model.eval()  # run in eval mode, so that no batch norm's statistics change
    try:
        values = _evaluate(graph, torch.zeros((1, *shape)), label, mode)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    nodes = sorted(graph.graph.nodes, key=lambda n: n.op != "call_module")  # layers first:
    problems = [p for node in nodes  # a layer type desim lacks is the first thing to fix
                if (p := _problem(node, modules, values.holds, allowed)) is not None]
    if FANOUT not in allowed:
        problems += [p for node in graph.graph.nodes
                     if (p := _fanout(node, modules, values.tensor)) is not None]
    problems += _unused_layers(graph, modules, values.holds)
    problems += _shared_layers(graph, modules)
    problems += _tied_parameters(model)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"model {label}: {problems[0]}{more}", key="workload.model")
