"""Training keeps for backward only what its gradients need from the frozen base's layers.

autograd keeps more than a LoRA's gradients need in four kinds of layer of a UNet3D:

- a frozen convolution keeps its input, though the gradient it passes back needs its weight alone;
- a GEGLU feed-forward keeps the GELU of its gate besides the projection it was computed from;
- a SiLU right after a GroupNorm keeps the norm's output, though the norm keeps the input it came from;
- a LoRA's first layer right after a LayerNorm (the temporal attention's projections) keeps the norm's
  output, though the norm keeps the input it came from.

Here the first keeps nothing new, the second recomputes the GELU in backward and the others the norm
(once for all the layers that read one norm's output), elementwise work next to the matrix products
around them. The gradients are the very ones autograd gives (the same kernels on the same values); on the CPU
benchmark's base a T-LoRA step keeps 572 MiB instead of 820 (``python -m tools.bench.saved_activations``).
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
from diffusers.models.activations import GEGLU
from torch.nn import functional as F


def _autocast(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast computes in where ``x`` lives, or None where it is off."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


class _FrozenConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.geometry = (x.shape, stride, padding, dilation, groups)
        ctx.save_for_backward(weight)
        return torch.ops.aten.convolution(x, weight, bias, stride, padding, dilation, False,
                                          [0] * len(stride), groups)

    @staticmethod
    def backward(ctx, grad):
        weight, = ctx.saved_tensors
        shape, stride, padding, dilation, groups = ctx.geometry
        # the input's gradient reads the input's shape alone: a one-element stand-in carries it
        stand_in = grad.new_empty(1).expand(shape)
        grad_input = torch.ops.aten.convolution_backward(grad, stand_in, weight, None, stride, padding, dilation,
                                                         False, [0] * len(stride), groups,
                                                         [True, False, False])[0]
        return grad_input, None, None, None, None, None, None


def convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
                groups: int) -> torch.Tensor:
    """``F.conv2d`` / ``F.conv3d`` (by ``weight``'s dimensions; numeric padding) that keeps no input for
    backward where only the input takes a gradient: the weight and bias are frozen."""
    if not (torch.is_grad_enabled() and x.requires_grad and not weight.requires_grad
            and (bias is None or not bias.requires_grad)):
        conv = F.conv3d if weight.dim() == 5 else F.conv2d
        return conv(x, weight, bias, stride, padding, dilation, groups)
    geometry = list(stride), list(padding), list(dilation), groups
    dtype = _autocast(x)
    if dtype is None:
        return _FrozenConvolution.apply(x, weight, bias, *geometry)
    # autocast runs convolutions in its dtype: cast as it would, and keep the cast weight as it would
    cast = [None if t is None else t.to(dtype) for t in (x, weight, bias)]
    with torch.autocast(x.device.type, enabled=False):
        return _FrozenConvolution.apply(*cast, *geometry)


def _convolution_forward(conv: torch.nn.Module):
    def run(x: torch.Tensor) -> torch.Tensor:
        return convolution(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return run


def _plain_convolution(module: torch.nn.Module) -> bool:
    return (type(module) in (torch.nn.Conv2d, torch.nn.Conv3d) and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


class _GatedGelu(torch.autograd.Function):
    """GEGLU's ``hidden * gelu(gate)`` over its projection ``[hidden, gate]``, keeping the projection alone."""

    @staticmethod
    def forward(ctx, projected):
        ctx.save_for_backward(projected)
        hidden, gate = projected.chunk(2, dim=-1)
        return hidden * F.gelu(gate)

    @staticmethod
    def backward(ctx, grad):
        projected, = ctx.saved_tensors
        hidden, gate = projected.chunk(2, dim=-1)
        grad_projected = torch.empty_like(projected)  # both halves written in place: no temporaries
        grad_hidden, grad_gate = grad_projected.chunk(2, dim=-1)
        torch.ops.aten.gelu.out(gate, out=grad_hidden).mul_(grad)
        torch.mul(grad, hidden, out=grad_gate)
        torch.ops.aten.gelu_backward.grad_input(grad_gate, gate, grad_input=grad_gate)
        return grad_projected


def _geglu_forward(geglu: GEGLU):
    def run(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        projected = geglu.proj(hidden_states)
        if torch.is_grad_enabled() and projected.requires_grad:
            return _GatedGelu.apply(projected)
        hidden, gate = projected.chunk(2, dim=-1)
        return hidden * F.gelu(gate)
    return run


class _Renormed:
    """One norm call's output, recomputed in backward once for every layer that read it (a temporal
    attention's query, key and value read the same LayerNorm) and dropped when the last has taken it."""

    def __init__(self, norm: torch.nn.GroupNorm | torch.nn.LayerNorm):
        self.norm, self.readers, self.value = norm, 0, None

    def read(self) -> "_Renormed":
        self.readers += 1
        return self

    def take(self, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        """The norm of ``x``, the norm's input, computed as the norm ran (``dtype``: autocast's, or None)."""
        value = self.value
        if value is None:
            norm = self.norm
            with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
                if isinstance(norm, torch.nn.GroupNorm):
                    value = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
                else:
                    value = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        self.readers -= 1
        self.value = value if self.readers > 0 else None
        return value


class _SiluOfGroupNorm(torch.autograd.Function):
    """``silu(normed)`` where ``normed = norm(x)``: keeps ``x`` (which the norm keeps too) and recomputes
    ``normed`` in backward."""

    @staticmethod
    def forward(ctx, normed, x, renormed):
        ctx.renormed, ctx.autocast = renormed.read(), _autocast(x)
        ctx.save_for_backward(x)
        return F.silu(normed)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad, ctx.renormed.take(x, ctx.autocast)), None, None


class _LastNorm:
    """The most recent output and input of one kind of norm, held weakly, and its recompute, for a layer
    that may read it."""

    def __init__(self):
        self.output = self.input = lambda: None
        self.renormed = None

    def record(self, norm, args, output):
        self.output, self.input = weakref.ref(output), weakref.ref(args[0])
        self.renormed = _Renormed(norm)

    def input_of(self, x: torch.Tensor) -> torch.Tensor | None:
        """The norm's input where ``x`` is its output and autograd records, else None."""
        return self.input() if self.output() is x and torch.is_grad_enabled() else None


def _silu_forward(group_norm: _LastNorm):
    def run(x: torch.Tensor) -> torch.Tensor:
        norm_input = group_norm.input_of(x) if x.requires_grad else None
        if norm_input is not None:
            return _SiluOfGroupNorm.apply(x, norm_input, group_norm.renormed)
        return F.silu(x)
    return run


class _LinearOfLayerNorm(torch.autograd.Function):
    """A trainable linear layer over ``normed = norm(x)``: keeps ``x`` (which the norm keeps too) and
    recomputes ``normed`` (once for all its readers) and the layer in backward."""

    @staticmethod
    def forward(ctx, normed, x, renormed, weight, bias):
        ctx.renormed, ctx.autocast, ctx.normed_dtype = renormed.read(), _autocast(x), normed.dtype
        ctx.save_for_backward(x, weight, bias)
        return F.linear(normed, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        dtype = ctx.autocast
        normed = ctx.renormed.take(x, dtype)
        if dtype is not None:  # autocast ran the layer in its dtype
            normed, weight_used = normed.to(dtype), weight.to(dtype)
        else:
            weight_used = weight
        # linear's own backward: the products autograd's matmul backward takes, over the flattened rows
        grad_rows = grad.reshape(-1, grad.shape[-1])
        grad_normed = grad_rows.mm(weight_used).view(*grad.shape[:-1], weight.shape[1]).to(ctx.normed_dtype)
        grad_weight = grad_bias = None
        if weight.requires_grad:
            grad_weight = grad_rows.t().mm(normed.reshape(-1, normed.shape[-1])).to(weight.dtype)
        if bias is not None and bias.requires_grad:
            grad_bias = grad_rows.sum(0).to(bias.dtype)
        return grad_normed, None, None, grad_weight, grad_bias


def _linear_forward(linear: torch.nn.Linear, layer_norm: _LastNorm):
    def run(x: torch.Tensor) -> torch.Tensor:
        norm_input = layer_norm.input_of(x) if linear.weight.requires_grad else None
        if norm_input is not None:
            return _LinearOfLayerNorm.apply(x, norm_input, layer_norm.renormed, linear.weight, linear.bias)
        return F.linear(x, linear.weight, linear.bias)
    return run


@contextlib.contextmanager
def lean_backward(unet: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """For the block, the UNet's frozen convolutions, GEGLUs, SiLUs after GroupNorms and trainable linear
    layers after LayerNorms keep only what their gradients need. Layers that run a forward of their own
    already (recomputed in backward, or run another way) keep it. Enter after adapters are injected and
    trainable parameters chosen: linear layers are taken as trainable when it is entered, convolutions
    judged frozen as they run."""
    if not enabled:
        yield
        return
    group_norm, layer_norm = _LastNorm(), _LastNorm()
    replaced, hooks = [], []
    for module in unet.modules():
        if "forward" in module.__dict__:
            continue
        if isinstance(module, GEGLU):
            module.forward = _geglu_forward(module)
        elif _plain_convolution(module):
            module.forward = _convolution_forward(module)
        elif type(module) is torch.nn.SiLU:
            module.forward = _silu_forward(group_norm)
        elif type(module) is torch.nn.Linear and module.weight.requires_grad:
            module.forward = _linear_forward(module, layer_norm)
        else:
            if isinstance(module, torch.nn.GroupNorm):
                hooks.append(module.register_forward_hook(group_norm.record))
            elif isinstance(module, torch.nn.LayerNorm):
                hooks.append(module.register_forward_hook(layer_norm.record))
            continue
        replaced.append(module)
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for module in replaced:
            del module.forward
