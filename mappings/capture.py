"""Capture: what each conv and linear layer computes in one real training iteration.

We run a real forward and backward pass of a `torch.nn.Module` and keep, for every
`nn.Conv2d`, `nn.Linear` and `MatMul` layer, the non-zero maps of its input activations X,
its weights W (after pruning) and its output gradient dY, as bool tensors (one byte an
element; never float copies). From those the three training phases follow:

- FF: Y = W * X       (forward)
- BP: dX = W^T * dY   (backward, input gradient)
- WG: dW = X * dY     (weight gradient)

A linear layer is captured as a 1x1 convolution over a 1x1 image, with every leading dimension
of its input (batch, sequence) folded into the batch, so one counting path serves both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


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
    # For a slice of rows of a layer, X comes padded explicitly (padding = 0) and x_valid
    # marks the positions inside the image, so counting still skips the padding.
    x_valid: torch.Tensor | None = None

    @property
    def macs(self) -> int:
        """Nominal multiply-accumulates of one phase: N*K*(C/g)*R*S*P*Q."""
        n, k, p, q = self.dy_nz.shape
        _, cg, r, s = self.w_nz.shape
        return n * k * cg * r * s * p * q


def _as_nchw(t: torch.Tensor) -> torch.Tensor:
    """A linear layer's (..., C) tensor as (N', C, 1, 1)."""
    return t.reshape(-1, t.shape[-1], 1, 1)


def _square(v: int | tuple[int, ...], what: str, name: str) -> int:
    if isinstance(v, int):
        return v
    if len(set(v)) != 1:
        raise NotImplementedError(f"{name}: non-square {what} {v} is not supported yet")
    return int(v[0])


def capture(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
            loss_fn: nn.Module | None = None) -> list[LayerCapture]:
    """Run one forward and backward pass and return every conv/linear layer's capture.

    Layers come in forward order. The model's weights are used as they are (apply pruning
    before calling). Gradients are left in `.grad` of the parameters for the caller's use.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    records: dict[str, dict] = {}
    order: list[str] = []
    handles = []

    def on_forward(name: str, module: nn.Module):
        def hook(_m, args, _out):
            x = args[0].detach()
            order.append(name)
            records[name] = {"x_nz": x != 0, "needs_input_grad": args[0].requires_grad}
        return hook

    def on_backward(name: str):
        def hook(_m, _grad_in, grad_out):
            records[name]["dy_nz"] = grad_out[0].detach() != 0
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(on_forward(name, module)))
            handles.append(module.register_full_backward_hook(on_backward(name)))
    try:
        with warnings.catch_warnings():  # the first layer's input needs no gradient: expected
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
    finally:
        for h in handles:
            h.remove()

    modules = dict(model.named_modules())
    layers = []
    for name in order:
        module, rec = modules[name], records[name]
        if "dy_nz" not in rec:  # layer not on the loss's path
            continue
        w_nz = module.weight.detach() != 0
        if isinstance(module, nn.Linear):
            layers.append(LayerCapture(name, "linear", _as_nchw(rec["x_nz"]),
                                       w_nz.reshape(*w_nz.shape, 1, 1), _as_nchw(rec["dy_nz"]),
                                       needs_input_grad=rec["needs_input_grad"]))
        else:
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise NotImplementedError(f"{name}: only numeric zero padding is supported")
            layers.append(LayerCapture(
                name, "conv", rec["x_nz"], w_nz, rec["dy_nz"],
                stride=_square(module.stride, "stride", name),
                padding=_square(module.padding, "padding", name),
                dilation=_square(module.dilation, "dilation", name),
                groups=module.groups, needs_input_grad=rec["needs_input_grad"]))
    return layers
