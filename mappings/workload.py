"""A workload: a model, a batch of real data and a pruning, captured in one training step.

The workload section of an experiment names the model (from `mappings.models`), the batch,
the data set and the seed; a run adds its pruning. `capture_workload` builds the model with
that seed, prunes it, runs one real forward and backward pass and returns every layer's
non-zero maps. The same (workload, pruning) is captured once and shared by the runs that
need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TypeVar

import torch

from desim.errors import ConfigError, out_of_memory, out_of_memory_as
from mappings.capture import (
    BitMap,
    CaptureNeeds,
    PackedLayer,
    VectorCapture,
    call_positionally,
    capture,
)
from mappings.datasets import batch
from mappings.model_path import is_file_model
from mappings.models import build_model, default_input_shape, input_shape_misfit
from mappings.models.common import MatMul
from mappings.models.from_file import build_file_model
from mappings.models.supported import (
    make_paddings_numeric,
    refuse_empty_layers,
    refuse_uncounted,
    refuse_untrainable,
)
from mappings.pruning import PruningSpec, prune_model
from mappings.scalesim import read_topology
from mappings.specs import TrainingSpec, WorkloadSpec
from mappings.training import (
    captured_iteration,
    in_eval_mode,
    regrows_after,
    train_and_capture,
)

# Methods whose algorithm uses the gradients of pruned weights: DropBack ranks every weight by
# how far its updates moved it (an untracked one, by its last step's), every step; RigL
# regrows the weights of largest gradient magnitude, on its update steps only
# (`reads_pruned_gradients`). The others never read them: static masks; SET regrows at
# random; Trainer's dynamic sparse training "performs FF, BP, and WG only with unpruned
# weights" (shared/seeds/001), the mask of each iteration being known before its WG.
PRUNED_GRADIENTS_USED = {"dropback", "rigl"}
T = TypeVar("T")


@dataclass
class Workload:
    """One captured training iteration."""

    spec: WorkloadSpec
    pruning: PruningSpec
    layers: list[PackedLayer]  # bit-packed at rest; the mapper unpacks one at a time
    pruned_grads_unused: bool  # WG may skip pruned weights (PRUNED_GRADIENTS_USED)
    stats: dict[str, float | None] = field(default_factory=dict)
    vectors: list[VectorCapture] = field(default_factory=list)  # batch norm, ReLU, pooling
    pruned_layers: tuple[str, ...] = ()  # names of the layers the pruning touched
    needs: CaptureNeeds = CaptureNeeds()  # what was captured besides the maps


def capture_workload(spec: WorkloadSpec, pruning: PruningSpec,
                     needs: CaptureNeeds = CaptureNeeds()) -> Workload:
    """One training iteration of the workload's model under `pruning`, with what `needs`
    says the designs that read it need besides the maps (`capture.CaptureNeeds`)."""
    if spec.scalesim_topology is not None:
        # Dense layers as SCALE-Sim reads them; the run's pruning does not apply.
        layers = read_topology(spec.scalesim_topology, packed=True)
        return Workload(spec, pruning, layers, True, _stats(layers, {}, [], spec.inference))
    model, shape = checked_model(spec)
    with _batch_norms_trainable(model):
        return _within_memory(spec, shape, lambda: _capture(spec, pruning, model, shape,
                                                            num_classes(spec), needs))


@dataclass
class Untrained:
    """One iteration of the workload's model, untrained and unpruned: what `desim.elaborate`
    checks a design and a pruning against before any training."""

    layers: list[PackedLayer]  # the conv and linear layers, as a capture gives them
    model: torch.nn.Module | None  # on the meta device: modules and shapes, no weights;
    # None for a SCALE-Sim topology, which is not pruned
    # no MatMul: it took min(batch, CHECK_IMAGES) images, and serves every batch that takes
    # as many (`untrained_key`)
    batch_free: bool = False


# Images the untrained iteration takes: a tile's size and the fit check's verdict do not
# depend on the batch past two (one image is a tile's least; WG tries chunks of one image,
# as it does at any batch), and two keep a batch norm on a 1 x 1 map trainable.
CHECK_IMAGES = 2


def untrained(spec: WorkloadSpec) -> Untrained:
    """The workload's conv and linear layers as one iteration of its model, untrained and
    unpruned, captures them, and the model's modules. Their geometry (shapes, stride,
    padding, groups) is the trained model's, and neither a tile's size nor a pruning's
    constraints (`mappings.pruning.check_layers`) depend on anything else, so
    `desim.elaborate` checks both before any training. Its forward pass alone
    (`capture`'s `geometry_only`: no gradient is read). The iteration takes `CHECK_IMAGES`
    images, not the batch (ResNet-18 at ImageNet size, batch 8: 1.7 s, not 4.4), unless the
    model multiplies activations (`MatMul`): the batch is those layers' groups."""
    if spec.scalesim_topology is not None:
        return Untrained(read_topology(spec.scalesim_topology, packed=True), None)
    model, shape = checked_model(spec)
    classes = num_classes(spec)
    batch_free = not any(isinstance(m, MatMul) for m in model.modules())
    images = min(spec.batch, CHECK_IMAGES) if batch_free else spec.batch

    def one_iteration() -> list[PackedLayer]:  # on random inputs: no data set to load
        gen = torch.Generator().manual_seed(spec.seed)
        return capture(model, *batch("random", images, shape, classes, generator=gen),
                       packed=True, needs=CaptureNeeds.none(), geometry_only=True)
    with _batch_norms_trainable(model):
        layers = _within_memory(spec, shape, one_iteration)
    # its weights' memory freed, shapes kept
    return Untrained(layers, model.to("meta"), batch_free=batch_free)


def untrained_key(spec: WorkloadSpec) -> str:
    """What a batch-free untrained iteration (`Untrained.batch_free`) is kept under for
    other batches of the same workload: its spec at the batch it took (inputs are random,
    so the data does not matter either way)."""
    return spec.model_copy(update={"batch": min(spec.batch, CHECK_IMAGES)}).model_dump_json()


def _within_memory(spec: WorkloadSpec, shape: tuple[int, ...], work: Callable[[], T]) -> T:
    """`work()`, with running out of memory said as bad input (the batch is too large)."""
    with out_of_memory_as(ConfigError(
            f"{spec.model} at batch {spec.batch}, inputs {list(shape)}: one training "
            "iteration does not fit in this machine's memory", key="workload.batch")):
        return work()


@contextmanager
def _batch_norms_trainable(model: torch.nn.Module) -> Iterator[None]:
    """Within it, a training batch norm that sees one value per channel (batch 1 on a 1 x 1
    map) is bad input naming the layer: torch refuses to train it with a ValueError that
    names neither the layer nor the key to change."""
    def refuse_one_value(name: str) -> Callable[[torch.nn.Module, tuple], None]:
        def hook(module: torch.nn.Module, args: tuple) -> None:
            x = args[0]
            if module.training and x.shape[0] * math.prod(x.shape[2:]) == 1:  # torch's check
                where, larger = ("batch 1 on a 1x1 map", ", or a larger input_shape") \
                    if x.dim() > 2 else ("batch 1", "")
                raise ConfigError(f"batch norm {name!r} sees one value per channel ({where}, "
                                  f"input {list(x.shape)}) and cannot train; use a batch of "
                                  f"2 or more{larger}", key="workload.batch")
        return hook

    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    handles = [module.register_forward_pre_hook(refuse_one_value(name))
               for name, module in model.named_modules() if isinstance(module, norms)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def num_classes(spec: WorkloadSpec) -> int:
    """The classes of the workload's loss: its model's, else the workload's. The capture
    trains on a classification loss, so a model without a head (the transformer block's
    `num_classes: null`, for the API) is bad input here."""
    classes = spec.model_args.get("num_classes", spec.num_classes)
    if classes is None:
        raise ConfigError(f"model {spec.model!r} without a classification head has no loss to "
                          "train on; expected a number of classes",
                          key="workload.model_args.num_classes")
    return classes


def input_shape(spec: WorkloadSpec) -> tuple[int, ...]:
    """The input, without the batch, that the workload's model takes: the file's, else the
    model's default with the axes its arguments set (a transformer's seq_len and dim). A
    model from a file has no default: its input_shape is required."""
    if is_file_model(spec.model) and spec.input_shape is None:
        raise ConfigError(f"model {spec.model!r} from a file has no default input; give "
                          "workload.input_shape, one input without the batch (e.g. "
                          "[3, 32, 32])", key="workload.input_shape")
    return tuple(spec.input_shape or default_input_shape(spec.model, spec.model_args))


def checked_model(spec: WorkloadSpec) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The workload's model, built from its seed, and its input shape, checked: a model it
    does not know, an argument the model does not take or a shape it cannot run is a
    ConfigError here, before any capture. A model from the user's file is also checked to
    compute nothing the capture does not count (`refuse_uncounted`) and to output one score
    a class."""
    torch.manual_seed(spec.seed)
    if is_file_model(spec.model):
        return _checked_file_model(spec)
    model = build_model(spec.model, **{"num_classes": spec.num_classes, **spec.model_args})
    shape = input_shape(spec)
    misfit = input_shape_misfit(spec.model, spec.model_args, shape)
    if misfit:
        raise ConfigError(misfit, key="workload.input_shape")
    taken = (spec.model_dump_json(include={"model", "model_args", "num_classes"}), shape)
    if taken not in _SHAPES_TAKEN:
        _check_input_shape(model, spec.model, shape)
        _SHAPES_TAKEN.add(taken)
    return model, shape


# The built-in models that `_check_input_shape` has seen take their input shape, by model,
# arguments, classes and shape. Whether a built-in model's forward pass fails depends on
# those alone, not on its weights (nor its seed), so the capture of a workload that
# `desim.elaborate` checked (`untrained`, the same model and shape) does not run that pass
# again: ResNet-18 at 224 x 224, 80 ms. Refusals are not kept (each is raised again), and a
# model from the user's file is checked every time (`_checked_file_model`).
_SHAPES_TAKEN: set[tuple[str, tuple[int, ...]]] = set()


def _checked_file_model(spec: WorkloadSpec) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """`checked_model` of a model from the user's file (`mappings.models.from_file`)."""
    shape = input_shape(spec)
    classes = num_classes(spec)
    model = build_file_model(spec.model, spec.model_args, spec.num_classes)
    call_positionally(model)  # `conv(input=x)`: the hooks read positional inputs
    make_paddings_numeric(model)
    other = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                    if p.dtype != torch.float32})
    if other:  # (its forward failed on the float32 input, said under input_shape)
        raise ConfigError(f"model {spec.model!r} has parameters in {', '.join(other)}; the "
                          "capture runs a float32 model (the datapath's precision is the "
                          "design's: pe_cluster.precision)", key="workload.model")
    refuse_empty_layers(model, repr(spec.model))
    try:
        out = _check_input_shape(model, spec.model, shape)
    except ConfigError:
        raise
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the user's forward: theirs
        text = str(err).strip().splitlines()
        raise ConfigError(f"model {spec.model!r} cannot take inputs of shape {list(shape)}: "
                          f"{type(err).__name__}: {text[0] if text else '(no message)'}",
                          key="workload.input_shape") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model {spec.model!r} outputs {got} for one input of shape "
                          f"{list(shape)}; the capture's classification loss needs [1, "
                          f"{classes}] (one score a class, workload.num_classes)",
                          key="workload.num_classes")
    # checked in the mode the capture runs it in (`_capture`)
    refuse_uncounted(model, repr(spec.model), shape,
                     training=model.training and not spec.inference)
    refuse_untrainable(model, repr(spec.model), training=not spec.inference)
    return model, shape


def _check_input_shape(model: torch.nn.Module, name: str, shape: tuple[int, ...]) -> object:
    """An input shape the model cannot take is bad input: one sample through it (in eval
    mode, so no statistics change) fails here rather than deep in the capture. Returns
    the model's output."""
    try:
        with torch.no_grad(), in_eval_mode(model):
            return model(torch.zeros((1, *shape)))
    except (MemoryError, RuntimeError, ValueError) as err:
        what = "does not fit in this machine's memory" if out_of_memory(err) \
            else str(err).splitlines()[0]
        raise ConfigError(f"model {name!r} cannot take inputs of shape {list(shape)}: {what}",
                          key="workload.input_shape") from None


def _capture(spec: WorkloadSpec, pruning: PruningSpec, model: torch.nn.Module,
             shape: tuple[int, ...], num_classes: int, needs: CaptureNeeds) -> Workload:
    """Capture one iteration of `model` (after `spec.training`, if given) under `pruning`."""
    if spec.speculative_relu:  # applying the predictions needs them
        needs = replace(needs, relu_predictions=True)
    gen = torch.Generator().manual_seed(spec.seed)
    pruned_grads_unused = not reads_pruned_gradients(pruning, spec.training)
    vectors: list[VectorCapture] = []
    if spec.training is not None:
        layers, masks, trained = train_and_capture(model, pruning, spec.training, spec.data,
                                                   spec.batch, shape, num_classes,
                                                   spec.seed, packed=True, vectors=vectors,
                                                   speculative=spec.speculative_relu,
                                                   needs=needs, inference=spec.inference)
        _mark_tracked(layers, masks, pruning)
        return Workload(spec, pruning, layers, pruned_grads_unused,
                        {**_stats(layers, masks, vectors, spec.inference), **trained}, vectors,
                        tuple(masks),
                        needs)
    inputs, targets = batch(spec.data, spec.batch, shape, num_classes, generator=gen)
    masks = prune_model(model, pruning)
    with in_eval_mode(model) if spec.inference else nullcontext():  # as deployed
        layers = capture(model, inputs, targets, packed=True, vectors=vectors,
                         speculative=spec.speculative_relu, needs=needs)
    _mark_tracked(layers, masks, pruning)
    return Workload(spec, pruning, layers, pruned_grads_unused,
                    _stats(layers, masks, vectors, spec.inference), vectors, tuple(masks), needs)


def reads_pruned_gradients(pruning: PruningSpec, training: TrainingSpec | None) -> bool:
    """Whether the captured iteration's step reads the pruned weights' gradients, so that WG
    computes every weight's (`PRUNED_GRADIENTS_USED`): DropBack's every step; RigL's only
    where the captured iteration's step is one of its updates (`training.regrows_after`:
    between them its masks are static and its step uses the kept weights' gradients
    alone, as SET's). Without a training the captured iteration takes no step: RigL's
    masks never move (magnitude pruning), and nothing reads the pruned weights'
    gradients."""
    if pruning.method != "rigl":
        return pruning.method in PRUNED_GRADIENTS_USED
    return training is not None and regrows_after(pruning, captured_iteration(training))


def _mark_tracked(layers: list[PackedLayer], masks: dict[str, torch.Tensor],
                  pruning: PruningSpec) -> None:
    """DropBack's masks are its tracked weights: keep them beside the non-zero maps, for
    hardware that regenerates the untracked ones (arch/weight_generator.py)."""
    if pruning.method != "dropback":
        return
    for layer in layers:
        if layer.name in masks:
            layer.w_tracked = BitMap(masks[layer.name].reshape(layer.w_nz.shape).bool())


def _stats(layers: list[PackedLayer], masks: dict[str, torch.Tensor],
           vectors: list[VectorCapture], inference: bool) -> dict[str, float | None]:
    """Sparsity of the weights (pruned layers), activations and gradients, and how many
    vector layers (batch norm, activations, pooling, adds, softmax) the model has, in one place.

    activation_sparsity: the zeros among the layers' inputs that are activations, not the
    data itself (a model's first layer reads the images; a probe's or a transformer block's
    first layer reads an activation made from them: a ReLU's, a norm's output).
    gradient_sparsity: None for an `inference`, whose backward pass is never simulated
    (the capture's dY is no part of its work: it had been reported, 0.50 for
    permdnn_lenet300)."""
    def density(maps: list[BitMap] | list[torch.Tensor]) -> float:
        total = sum(m.numel if isinstance(m, BitMap) else m.numel() for m in maps)
        nnz = sum(m.nnz if isinstance(m, BitMap) else int(m.sum()) for m in maps)
        return nnz / total if total else 1.0

    out = {
        "activation_sparsity": 1 - density([layer.x_nz for layer in layers
                                            if not layer.x_is_data]),
        "gradient_sparsity": None if inference else 1 - density([  # (a gradient
            layer.dy_nz for layer in layers if layer.needs_input_grad or layer.weight_trained]),
        "weight_sparsity": 1 - density([layer.w_nz for layer in layers]),
        "vector_layers": len(vectors),
    }
    if masks:
        out["pruned_layers_weight_sparsity"] = 1 - density(list(masks.values()))
    speculated = [layer for layer in layers if layer.y_spec is not None]
    if speculated:  # ReLU speculation (mappings/speculation.py), on the layers it applies to
        out["speculated_layers"] = len(speculated)
        out["speculated_zero_fraction"] = 1 - density([layer.y_spec for layer in speculated])
        exact = sum(layer.spec_exact_nonzeros for layer in speculated)
        out["speculation_false_zero_rate"] = (
            sum(layer.spec_false_zeros for layer in speculated) / exact if exact else 0.0)
        out["speculation_false_zero_mass"] = (  # layers weighted by their non-zero outputs
            sum(layer.spec_false_zero_mass * layer.spec_exact_nonzeros for layer in speculated)
            / exact if exact else 0.0)
    return out
