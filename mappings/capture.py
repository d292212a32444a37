"""Capture: what each conv and linear layer computes in one real training iteration.

We run a real forward and backward pass of a `torch.nn.Module` and keep, for every
`nn.Conv2d`, `nn.Linear` and `MatMul` layer, the non-zero maps of its input activations X,
its weights W (after pruning) and its output gradient dY, as bool tensors (one byte an
element; never float copies). From those the three training phases follow:

- FF: Y = W * X       (forward)
- BP: dX = W^T * dY   (backward, input gradient)
- WG: dW = X * dY     (weight gradient)

A linear layer is captured as a 1x1 convolution over a 1x1 image, with every leading dimension
of its input (batch, sequence) folded into the batch, so one counting path serves both. A
batched matrix product A @ B (a `MatMul` module: attention's Q K^T and attention x V) is a
grouped 1x1 convolution: one group per batch matrix, A's rows as images, B as the "weight";
B is an activation, so its gradient (WG) is never masked by a pruning mask.

At rest (`capture(..., packed=True)`, what workloads keep) the maps are bit-packed, one bit an
element, packed inside the hooks as the pass runs; the mapper unpacks one layer at a time.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from desim.errors import ConfigError
from mappings.formats import BlockStats, map_stats
from mappings.models.common import Add, Fork, MatMul, ScaledSoftmax
from mappings.speculation import ReluSpeculator, same_tensor


@dataclass
class LayerCapture:
    """One layer's shapes and non-zero maps, in conv layout (N, C, H, W) / (K, C/g, R, S)."""

    name: str
    kind: str  # "conv" or "linear"
    x_nz: torch.Tensor  # bool (N, C, H, W)
    w_nz: torch.Tensor  # bool (K, C/groups, R, S)
    dy_nz: torch.Tensor  # bool (N, K, P, Q)
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    needs_input_grad: bool = True  # False for the first layer: no gradient for the data
    weight_is_parameter: bool = True  # False for a matmul, whose "weight" is an activation
    # False for a frozen weight (`requires_grad` off: transfer learning's fixed layers): no
    # WG, no update. A layer that no gradient reaches at all (frozen, and every layer before
    # it) runs FF alone; its dy_nz is all zeros, only its shape read.
    weight_trained: bool = True
    # For a slice of rows of a layer, X comes padded explicitly (padding = 0) and x_valid
    # marks the positions inside the image, so counting still skips the padding.
    x_valid: torch.Tensor | None = None
    # DropBack: the tracked weights (bool, w_nz's shape); the others keep their initial
    # values, which hardware with a weight generator regenerates instead of reading them.
    w_tracked: torch.Tensor | None = None
    # ReLU speculation (mappings/speculation.py): the outputs (N, K, P, Q) predicted non-zero
    # after the ReLU that follows the layer; None when no ReLU directly follows it.
    y_spec: torch.Tensor | None = None
    spec_false_zeros: int = 0      # exact non-zero outputs predicted zero
    spec_exact_nonzeros: int = 0   # non-zero outputs of that ReLU
    spec_false_zero_mass: float = 0.0  # the false zeros' share of the ReLU output's sum
    # What the phases write, for formats that compress it: FF's output Y (N, K, P, Q) as it
    # leaves the layer, and as the ReLU that directly follows it (no batch norm between)
    # hands it on; BP's output dX (N, C, H, W). None: not captured (written dense).
    y_nz: torch.Tensor | None = None
    y_relu_nz: torch.Tensor | None = None
    dx_nz: torch.Tensor | None = None
    # With a foldable batch norm right after the layer (`VectorCapture.foldable`): that
    # norm's output, and the output of a ReLU right after the norm; at inference the norm
    # is folded into the layer's weights, so this is what the layer writes.
    y_folded_nz: torch.Tensor | None = None
    y_folded_relu_nz: torch.Tensor | None = None
    # With a fork right before the layer, the layer taking the fork's first copy (a residual
    # block's body, whose gradient is written last): the two branches' summed gradient,
    # which a fused fork (`fused_residual`) has this layer's BP write in place of its dX.
    dx_sum_nz: torch.Tensor | None = None
    # X is the model's input itself (or a view of it, e.g. flattened): the data, not an
    # activation (the workload's activation sparsity leaves it out).
    x_is_data: bool = False
    # X is the output of the module hooked just before this one (in forward order, through
    # reshapes and dropout), which inter-layer reuse may leave on chip (`reads_previous`)
    reads_previous: bool = True

    @property
    def macs(self) -> int:
        """The layer's index space, N*K*(C/g)*R*S*P*Q: the conventional MAC count, padding
        included. The MACs desim reports are the phases' `nominal` ones (mappings.counting),
        which leave out the pairs with a padding operand."""
        n, k, p, q = self.dy_nz.shape
        _, cg, r, s = self.w_nz.shape
        return n * k * cg * r * s * p * q


class BitMap:
    """A bool tensor kept one bit an element (numpy's packbits); `unpack()` restores it."""

    __slots__ = ("bits", "nnz", "shape")

    def __init__(self, t: torch.Tensor) -> None:
        self.shape = tuple(t.shape)
        flat = t.reshape(-1).numpy()
        self.bits = np.packbits(flat)
        self.nnz = int(np.count_nonzero(flat))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def reshape(self, *shape: int) -> BitMap:
        out = object.__new__(BitMap)
        out.bits, out.nnz, out.shape = self.bits, self.nnz, shape
        return out

    def unpack(self) -> torch.Tensor:
        flat = np.unpackbits(self.bits, count=self.numel).astype(bool)
        return torch.from_numpy(flat).reshape(self.shape)


@dataclass
class PackedLayer:
    """A `LayerCapture` at rest: the same fields, its three maps as `BitMap`s."""

    name: str
    kind: str
    x_nz: BitMap
    w_nz: BitMap
    dy_nz: BitMap
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    needs_input_grad: bool = True
    weight_is_parameter: bool = True
    weight_trained: bool = True
    w_tracked: BitMap | None = None
    y_spec: BitMap | None = None
    spec_false_zeros: int = 0
    spec_exact_nonzeros: int = 0
    spec_false_zero_mass: float = 0.0
    y_nz: BitMap | None = None
    y_relu_nz: BitMap | None = None
    dx_nz: BitMap | None = None
    y_folded_nz: BitMap | None = None
    y_folded_relu_nz: BitMap | None = None
    dx_sum_nz: BitMap | None = None
    x_is_data: bool = False
    reads_previous: bool = True

    def unpack(self) -> LayerCapture:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("x_nz", "w_nz", "dy_nz", "w_tracked", "y_spec", "y_nz", "y_relu_nz",
                    "dx_nz", "y_folded_nz", "y_folded_relu_nz", "dx_sum_nz"):
            if values[key] is not None:
                values[key] = values[key].unpack()
        return LayerCapture(**values)

    @property
    def macs(self) -> int:
        n, k, p, q = self.dy_nz.shape
        _, cg, r, s = self.w_nz.shape
        return n * k * cg * r * s * p * q


VECTOR_KINDS: dict[type, str] = {
    nn.BatchNorm1d: "batchnorm", nn.BatchNorm2d: "batchnorm", nn.LayerNorm: "layernorm",
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.GELU: "gelu",
    nn.MaxPool2d: "pool", nn.AvgPool2d: "avgpool", nn.AdaptiveAvgPool2d: "avgpool",
    Add: "add", Fork: "fork", nn.Softmax: "softmax", ScaledSoftmax: "softmax",
}

# The modules besides the vector kinds whose calls the capture hooks: the counted layers,
# the attention's matmuls, and dropout (which hands its input on).
HOOKED_TYPES = (nn.Conv2d, nn.Linear, MatMul, nn.Dropout)


def is_hooked(module: nn.Module) -> bool:
    """Whether the capture hooks this module's calls (so reads their inputs)."""
    return isinstance(module, HOOKED_TYPES) or type(module) in VECTOR_KINDS


@dataclass
class VectorCapture:
    """An element-wise or reduction layer (batch norm, activation, pooling, a residual add or
    fork, a softmax): no MACs, but data passes and vector operations. `after` is the index of the
    conv/linear layer it follows in forward order (-1: before the first)."""

    name: str
    kind: str  # batchnorm | layernorm | relu | gelu | pool (max) | avgpool | add | fork | softmax
    in_elems: int   # elements of its input (an add: of each of its two)
    out_elems: int  # elements of its output (a fork: of each of its two copies)
    after: int
    # FF's input and output, and BP's gradients of the output (dY) and of the input (dX),
    # as non-zero statistics (one block, lines along the last dim), for the bytes they take
    # in a compressed activation format.
    in_stats: BlockStats | None = None
    out_stats: BlockStats | None = None
    dy_stats: BlockStats | None = None
    dx_stats: BlockStats | None = None
    # The other operand of a two-operand pass: an add's other input (FF), a fork's other
    # branch's gradient (BP). in_stats (an add) and dy_stats (a fork) hold the operand
    # written last, the one inter-layer reuse may find in the global buffer.
    second_stats: BlockStats | None = None
    # The add whose output's gradient this layer takes as its dY (its output is one of the
    # add's operands: the add's BP hands both the same gradient), and for a fork, the add whose
    # gradient is its second branch's (an identity shortcut); None where it is its own.
    dy_from: str | None = None
    second_from: str | None = None
    # A batch norm with running statistics, right after a conv/linear layer: at inference an
    # affine per-channel transform, which deployment folds into that layer's weights.
    foldable: bool = False
    # A fork: the conv/linear layer that takes its first copy (`LayerCapture.dx_sum_nz`),
    # whose BP writes the sum when the fork is fused; None when no such layer does.
    sum_writer: str | None = None
    # A softmax that scales its input first (`ScaledSoftmax`: attention's 1/sqrt(d)), an op
    # an element more each way than a plain `nn.Softmax` (`mappings.vector`).
    scaled: bool = False
    # Whether a gradient reaches its output: not in a frozen model's first layers, which
    # run FF alone (`LayerCapture.weight_trained`).
    has_gradient: bool = True
    # Its input (an add's: the operand written last) is the output of the module hooked
    # just before it (`LayerCapture.reads_previous`)
    reads_previous: bool = True


def _same_data(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """The same elements, whatever the shape: a tensor and a view of it (flattened,
    transposed, split into heads), as a layer reads what the one before it wrote."""
    return b is not None and a.data_ptr() == b.data_ptr() and a.numel() == b.numel()


def _as_4d(t: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """A linear layer's (..., C) tensor (or (K, C) weight) as (N', C, 1, 1); convs as they are."""
    if isinstance(module, nn.Linear):
        return t.reshape(-1, t.shape[-1], 1, 1)
    return t


def _square(v: int | tuple[int, ...], what: str, name: str) -> int:
    if isinstance(v, int):
        return v
    if len(set(v)) != 1:
        raise ConfigError(f"layer {name}: non-square {what} {tuple(v)} is not supported "
                          "(desim counts strides, paddings and dilations the same along "
                          "height and width; a kernel may be rectangular)",
                          key="workload.model")
    return int(v[0])


def _positional(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """A forward pre-hook: a module called with keyword arguments (`conv(input=x)`,
    `add(a, b=b)`) called with them as positional ones, as the hooks read their inputs
    (`args[0]`) and a full backward hook sees the gradients of those alone. A call its
    forward cannot take is left to fail as it would."""
    if not kwargs:
        return None
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except TypeError:
        return None
    return bound.args, bound.kwargs


def call_positionally(model: nn.Module) -> None:
    """Have every module that desim hooks take keyword arguments as positional ones
    (`_positional`), in every pass (the capture's, training's, a design's own hooks')."""
    for module in model.modules():
        if is_hooked(module):
            module.register_forward_pre_hook(_positional, with_kwargs=True, prepend=True)


@dataclass(frozen=True)
class CaptureNeeds:
    """What the designs that read a capture need besides the non-zero maps; each costs
    capture time, so it is left out when none of them reads it. `relu_predictions`: each
    ReLU's speculation predicted (a design with a speculator; without, a layer keeps only
    its exact ReLU output). `rle_padding`: the vector layers' tensors' run-length padding
    counted (a design whose activations are run-length coded; without, it is None)."""

    relu_predictions: bool = True
    rle_padding: bool = True

    @classmethod
    def none(cls) -> CaptureNeeds:
        """Nothing besides the maps: what `|` starts from, and a capture no design reads."""
        return cls(relu_predictions=False, rle_padding=False)

    def __or__(self, other: CaptureNeeds) -> CaptureNeeds:
        return CaptureNeeds(self.relu_predictions or other.relu_predictions,
                            self.rle_padding or other.rle_padding)

    def covers(self, other: CaptureNeeds) -> bool:
        return (self | other) == self


def capture(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
            loss_fn: nn.Module | None = None, packed: bool = False,
            vectors: list[VectorCapture] | None = None, speculative: bool = False,
            needs: CaptureNeeds = CaptureNeeds(), geometry_only: bool = False
            ) -> list[LayerCapture] | list[PackedLayer]:
    """Run one forward and backward pass and return every conv/linear layer's capture.

    Layers come in forward order. The model's weights are used as they are (apply pruning
    before calling). Gradients are left in `.grad` of the parameters for the caller's use.
    With `packed`, maps are bit-packed as soon as the hooks see them (bounded memory).
    Given a `vectors` list, batch norm, activation and pooling layers are appended to it.
    Every layer that feeds a ReLU gets its ReLU speculation (`mappings.speculation`); with
    `speculative`, the pass runs as the speculating hardware runs it (false zeros applied).
    `needs`: what the designs that read this capture need beyond the maps (CaptureNeeds).
    `geometry_only`: the forward pass alone, each dY all zeros of its shape: the layers'
    shapes as `desim.elaborate` checks them, without the backward pass (half the time of a
    large input's check); every layer is kept, on the loss's path or not.
    """
    keep = BitMap if packed else (lambda t: t)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    records: dict[str, dict] = {}
    last_output: list = [None, False]  # the tensor a hooked layer wrote last; a conv/linear?
    folded: list = [None, None]  # the layer a foldable batch norm follows, the norm's output
    fork_out: list = [None, None]  # a fork whose first copy no layer has taken yet, the copy
    order: list[str] = []
    handles = []
    modules = dict(model.named_modules())

    def took_fork_copy(name: str | None, x: torch.Tensor) -> None:
        """The module after a fork runs: if it is the layer `name` and takes the fork's first
        copy, that layer's BP is the one a fused fork writes its sum from."""
        if fork_out[0] is not None and name is not None and same_tensor(x, fork_out[1]):
            fork_out[0].sum_writer = name
        fork_out[:] = [None, None]

    grads_on = torch.is_grad_enabled()  # the pass's own setting (on, but to train nothing)

    def refuse_cut_gradient(name: str) -> None:
        """A layer run with gradients off inside a forward that has them on (`torch.no_grad()`
        in the model) gets no gradient, where the capture would count its BP and WG."""
        if grads_on and not torch.is_grad_enabled():
            raise ConfigError(f"layer {name!r} runs with gradients off (torch.no_grad() or "
                              "torch.inference_mode() in the model's forward): its gradient "
                              "is cut, which desim does not model; freeze its weights "
                              "instead (requires_grad off: a frozen layer runs FF alone)",
                              key="workload.model")

    def on_forward(name: str, module: nn.Module):
        def hook(_m, args, out):
            refuse_cut_gradient(name)
            x = args[0].detach()
            took_fork_copy(name, x)
            speculator.layer(name, module, x, out)
            order.append(name)
            reads_previous = _same_data(x, last_output[0])
            last_output[:] = [out, True]
            records[name] = {"reads_previous": reads_previous,
                             "x_nz": keep(_as_4d(x != 0, module)),
                             "y_nz": keep(_as_4d(out.detach() != 0, module)),
                             "needs_input_grad": args[0].requires_grad,
                             "weight_trained": module.weight.requires_grad,
                             "x_is_data": x.data_ptr() == inputs.data_ptr()}
            if not out.requires_grad or geometry_only:  # (frozen: FF alone, no gradient)
                records[name]["dy_nz"] = keep(torch.zeros(_as_4d(out, module).shape,
                                                          dtype=torch.bool))
        return hook

    def on_matmul(name: str):
        def hook(_m, args, _out):
            refuse_cut_gradient(name)
            a, b = args
            batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            a, b = a.detach().expand(*batch, *a.shape[-2:]), b.detach().expand(*batch,
                                                                                *b.shape[-2:])
            m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
            groups = math.prod(batch)
            x = (a != 0).reshape(groups, m, k).transpose(0, 1).reshape(m, groups * k, 1, 1)
            w = (b != 0).reshape(groups, k, n).transpose(1, 2).reshape(groups * n, k, 1, 1)
            order.append(name)
            reads_previous = _same_data(args[0], last_output[0])
            last_output[:] = [_out, False]
            records[name] = {"reads_previous": reads_previous,
                             "x_nz": keep(x), "w_nz": keep(w), "groups": groups,
                             "needs_input_grad": args[0].requires_grad,
                             "weight_trained": args[1].requires_grad}  # WG: B's gradient
            if not _out.requires_grad or geometry_only:  # (frozen: FF alone)
                records[name]["dy_nz"] = keep(torch.zeros(m, groups * n, 1, 1,
                                                          dtype=torch.bool))
        return hook

    def on_matmul_backward(name: str):
        def hook(_m, _grad_in, grad_out):
            g = grad_out[0].detach() != 0
            m, n = g.shape[-2], g.shape[-1]
            g = g.reshape(-1, m, n).transpose(0, 1).reshape(m, -1, 1, 1)
            records[name]["dy_nz"] = keep(g)
        return hook

    def on_backward(name: str):
        def hook(_m, grad_in, grad_out):
            records[name]["dy_nz"] = keep(_as_4d(grad_out[0].detach() != 0, _m))
            if grad_in[0] is not None:
                records[name]["dx_nz"] = keep(_as_4d(grad_in[0].detach() != 0, _m))
        return hook

    recent: list[tuple[torch.Tensor, int, BlockStats]] = []

    def stats_of(t: torch.Tensor) -> BlockStats:
        """`map_stats` of t's non-zeros. One vector layer's output is the next one's input
        (and in BP its input gradient the next one's output gradient): a tensor among the
        last few counted, unmodified since, is not counted again."""
        t = t.detach()
        for seen, version, stats in recent:
            if same_tensor(t, seen) and t.stride() == seen.stride() and t._version == version:
                return stats
        stats = map_stats(t != 0, rle=needs.rle_padding)
        recent.append((t, t._version, stats))  # held, so its memory is not reused meanwhile
        del recent[:-4]
        return stats

    calls: dict[str, list[VectorCapture]] = {}  # a module called twice (a shared ReLU)
    # is captured twice; its backward calls come in reverse order

    def on_vector(name: str, kind: str):
        def hook(_m, args, out):
            x = args[0].detach()
            took_fork_copy(None, x)
            if kind == "fork":  # FF hands x on; BP sums its two copies' gradients, if wanted
                if args[0].requires_grad:
                    v = VectorCapture(name, kind, x.numel(), x.numel(), len(order) - 1,
                                      reads_previous=_same_data(x, last_output[0]))
                    _record(v)
                    fork_out[:] = [v, x]
                return
            if kind == "add":  # x: the operand written last (by the layer hooked last)
                other = args[1].detach()
                if last_output[0] is not None and same_tensor(other, last_output[0]):
                    x, other = other, x
            v = VectorCapture(name, kind, x.numel(), out.numel(), len(order) - 1,
                              stats_of(x), stats_of(out),
                              reads_previous=_same_data(x, last_output[0]))
            if kind == "add":
                v.second_stats = stats_of(other)
            v.scaled = isinstance(_m, ScaledSoftmax)
            v.has_gradient = out.requires_grad
            v.foldable = (isinstance(_m, nn.BatchNorm1d | nn.BatchNorm2d)
                          and _m.track_running_stats and last_output[1]
                          and same_tensor(x, last_output[0]))
            if v.foldable:  # what the layer before writes once the norm is folded into it
                layer = order[-1]
                records[layer]["y_folded_nz"] = keep(_as_4d(out.detach() != 0, modules[layer]))
                folded[:] = [layer, out]
            elif kind == "relu" and folded[1] is not None and same_tensor(x, folded[1]):
                records[folded[0]]["y_folded_relu_nz"] = keep(
                    _as_4d(out.detach() != 0, modules[folded[0]]))
            _record(v)
            last_output[:] = [out, False]
        return hook

    def _record(v: VectorCapture) -> None:
        vectors.append(v)
        calls.setdefault(v.name, []).append(v)

    add_grads: list[tuple[torch.Tensor, str]] = []  # each add's output gradient, in BP order

    def add_of(grad: torch.Tensor) -> str | None:
        """The add whose output gradient `grad` is, if any (the latest such add)."""
        return next((add for g, add in reversed(add_grads) if same_tensor(grad, g)), None)

    def on_vector_backward(name: str):
        def hook(_m, grad_in, grad_out):
            if not calls.get(name):
                return
            v = calls[name].pop()
            if v.kind == "fork":  # the first copy's gradient is written last (`Fork`)
                # (a branch off the loss's path has no gradient: zeros)
                grads = [torch.zeros_like(grad_in[0]) if g is None else g for g in grad_out]
                v.dy_stats, v.second_stats = (stats_of(g) for g in grads)
                v.dy_from, v.second_from = add_of(grads[0]), add_of(grads[1])
            else:
                v.dy_stats = stats_of(grad_out[0])
                v.dy_from = add_of(grad_out[0])
                if v.kind == "add":
                    add_grads.append((grad_out[0], v.name))
            if grad_in[0] is not None:
                v.dx_stats = stats_of(grad_in[0])
                if v.sum_writer is not None:
                    records[v.sum_writer]["dx_sum_nz"] = keep(
                        _as_4d(grad_in[0].detach() != 0, modules[v.sum_writer]))
        return hook

    def on_other(module: nn.Module, args, out):
        return speculator.other(module, args[0], out)

    def on_dropout(_m, args, out):
        """Dropout hands its input on, zeros added: what follows reads the same tensor."""
        if _same_data(args[0], last_output[0]):
            last_output[0] = out

    speculator = ReluSpeculator(apply=speculative,
                                predict=needs.relu_predictions or speculative)
    for name, module in model.named_modules():
        kind = VECTOR_KINDS.get(type(module))
        if kind is not None:
            handles.append(module.register_forward_hook(on_other))
        if vectors is not None and kind is not None:
            handles.append(module.register_forward_hook(on_vector(name, kind)))
            handles.append(module.register_full_backward_hook(on_vector_backward(name)))
        if isinstance(module, nn.Dropout):
            handles.append(module.register_forward_hook(on_dropout))
        if isinstance(module, MatMul):
            handles.append(module.register_forward_hook(on_matmul(name)))
            handles.append(module.register_full_backward_hook(on_matmul_backward(name)))
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(on_forward(name, module)))
            handles.append(module.register_full_backward_hook(on_backward(name)))
    # An in-place activation right after a hooked layer would modify the alias that the
    # layer's full backward hook hands on, which autograd forbids: run them out of place
    # (the same values) during the pass.
    in_place = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    try:
        for m in in_place:
            m.inplace = False
        with warnings.catch_warnings():  # the first layer's input needs no gradient: expected
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            if loss.requires_grad and not geometry_only:  # (a frozen model: FF alone)
                loss.backward()
    finally:
        for h in handles:
            h.remove()
        for m in in_place:
            m.inplace = True

    layers = []
    for name in order:
        module, rec = modules[name], records[name]
        if "dy_nz" not in rec:  # off the loss's path: no gradient reached it
            raise ConfigError(f"layer {name!r}: its output reaches no loss (no gradient "
                              "reaches it, so its work would be left out); remove it or use "
                              "it", key="workload.model")
        make = PackedLayer if packed else LayerCapture
        if isinstance(module, MatMul):
            layers.append(make(name, "matmul", rec["x_nz"], rec["w_nz"], rec["dy_nz"],
                               groups=rec["groups"], needs_input_grad=rec["needs_input_grad"],
                               weight_trained=rec["weight_trained"],
                               weight_is_parameter=False,  # A: an activation
                               reads_previous=rec["reads_previous"]))
            continue
        w_nz = _as_4d(module.weight.detach() != 0, module)
        spec = speculator.results.get(name)
        speculated = {} if spec is None or spec.predicted_nonzero is None else {
            "y_spec": keep(_as_4d(spec.predicted_nonzero, module)),
            "spec_false_zeros": spec.false_zeros, "spec_exact_nonzeros": spec.exact_nonzeros,
            "spec_false_zero_mass": spec.false_zero_mass}
        if spec is not None and not spec.through_batchnorm:
            speculated["y_relu_nz"] = keep(_as_4d(spec.relu_out_nz, module))
        speculated.update(y_nz=rec["y_nz"], dx_nz=rec.get("dx_nz"),
                          y_folded_nz=rec.get("y_folded_nz"),
                          y_folded_relu_nz=rec.get("y_folded_relu_nz"),
                          dx_sum_nz=rec.get("dx_sum_nz"))
        if isinstance(module, nn.Linear):
            layers.append(make(name, "linear", rec["x_nz"], keep(w_nz), rec["dy_nz"],
                               needs_input_grad=rec["needs_input_grad"],
                               weight_trained=rec["weight_trained"],
                               x_is_data=rec["x_is_data"],
                               reads_previous=rec["reads_previous"], **speculated))
        else:
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ConfigError(f"layer {name}: padding {module.padding!r} in mode "
                                  f"{module.padding_mode!r} is not supported (numeric zero "
                                  "padding only)", key="workload.model")
            layers.append(make(
                name, "conv", rec["x_nz"], keep(w_nz), rec["dy_nz"],
                stride=_square(module.stride, "stride", name),
                padding=_square(module.padding, "padding", name),
                dilation=_square(module.dilation, "dilation", name),
                groups=module.groups, needs_input_grad=rec["needs_input_grad"],
                weight_trained=rec["weight_trained"], x_is_data=rec["x_is_data"],
                reads_previous=rec["reads_previous"], **speculated))
    return layers
