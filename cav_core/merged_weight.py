"""Training runs a LoRA on a layer narrow for its rank as one product with the layer's merged weight.

peft computes a LoRA layer as ``base(x) + s * B(A(x))``: three products per token forward, and in
backward the gradients of ``A`` and ``B`` and of ``x`` through them. The same layer computed as
``(W + s * B @ A) x`` costs one product forward, and in backward the merged weight's gradient (one
``k * in * out`` product per token, ``k`` a convolution's kernel size), from which autograd takes
``A``'s and ``B``'s through the small ``B @ A``. Per token the factored path costs about
``3 * r * (k * in + out)`` multiply-adds more than the base layer and the merged one ``k * in * out``
more: merged is cheaper where the layer is narrow for its rank. The shapes-world base's rank-16 T-LoRA
on its 32-96 wide layers is; the 64.5 M benchmark base's rank-4 one on 64-256 wide layers is not
(``merges``). The merged path also runs half the operations, which at small widths is most of their
cost: on the shapes-world base a T-LoRA step takes 0.89x the time (``docs/bench/cpu_shapes_world.md``).

The values are the same sums in another order: equal to float rounding, not bit for bit.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from peft.tuners.lora import layer as lora_layers
from torch.nn import functional as F

from .compute import forwards_replaced, frames_conv2d, frames_only


def _lora_names(layer: lora_layers.LoraLayer) -> list[str]:
    return [n for n in layer.active_adapters if n in layer.lora_A]


def _trainable(layer: lora_layers.LoraLayer, name: str) -> bool:
    return layer.lora_A[name].weight.requires_grad or layer.lora_B[name].weight.requires_grad


def merges(layer: lora_layers.LoraLayer) -> bool:
    """Whether ``layer``'s active LoRAs run cheaper through its merged weight (per token multiply-adds).

    A LoRA whose factors train costs its three products forward and three backward (two gradients of
    the factors and the input's); a frozen one two (forward and the input's). The merged weight costs
    its gradient's product, where any LoRA on it trains, and nothing more. Only plain fp32 LoRAs on
    ``Linear`` and ungrouped ``Conv3d`` layers: peft's other variants compute something else."""
    base = layer.get_base_layer()
    names = _lora_names(layer)
    if (not names or layer.disable_adapters or layer.merged or base.weight.dtype != torch.float32
            or any(layer.use_dora.get(n) or not isinstance(layer.lora_dropout[n], torch.nn.Identity)
                   or layer.lora_A[n].weight.dtype != torch.float32 for n in names)):
        return False
    if isinstance(layer, lora_layers.Linear):
        inputs, outputs = base.in_features, base.out_features
    elif isinstance(layer, lora_layers.Conv3d) and base.groups == 1:
        inputs, outputs = base.weight[0].numel(), base.out_channels
    else:
        return False
    factored = sum(layer.r[n] * (inputs + outputs) * (3 if _trainable(layer, n) else 2) for n in names)
    merged = inputs * outputs if any(_trainable(layer, n) for n in names) else 0
    return merged <= factored


def merged_weight(layer: lora_layers.LoraLayer) -> torch.Tensor:
    """The base weight plus every active LoRA's ``scaling * B @ A``, in the base weight's shape."""
    base = layer.get_base_layer().weight
    weight = base.flatten(1)
    for name in _lora_names(layer):
        a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
        weight = torch.addmm(weight, b.flatten(1), a.flatten(1), alpha=layer.scaling[name])
    return weight.view_as(base)


def _linear_forward(layer: lora_layers.Linear, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if layer.disable_adapters:  # switched off for a validation sample: peft computes the base layer
        return type(layer).forward(layer, x, *args, **kwargs)
    base = layer.get_base_layer()
    return F.linear(x, merged_weight(layer), base.bias)


def _conv_forward(layer: lora_layers.Conv3d, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if layer.disable_adapters:
        return type(layer).forward(layer, x, *args, **kwargs)
    base = layer.get_base_layer()
    weight = merged_weight(layer)
    if x.device.type == "cpu" and x.dim() == 5 and frames_only(base):  # as compute.temporal_convs_as_2d
        return frames_conv2d(x, weight, base.bias, base.padding[0])
    return base._conv_forward(x, weight, base.bias)


def _merged_forward(layer: lora_layers.LoraLayer):
    run = _linear_forward if isinstance(layer, lora_layers.Linear) else _conv_forward
    return functools.partial(run, layer)


@contextlib.contextmanager
def merged_weight_loras(unet: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """For the block, every peft LoRA layer of ``unet`` that ``merges`` runs through its merged weight.
    Enter after adapters are injected, activated and trainable parameters chosen; layers with a forward
    of their own already keep it."""
    layers = [m for m in unet.modules() if isinstance(m, lora_layers.LoraLayer) and merges(m)] if enabled else []
    with forwards_replaced(layers, _merged_forward):
        yield
