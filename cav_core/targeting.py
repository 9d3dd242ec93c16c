"""Which UNet3D layers are temporal and spatial, selected by module class (any UNet3D config)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import (
    TransformerTemporalModel,
    TransformerTemporalModelOutput,
)

ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
FEED_FORWARD = ("ff.net.0.proj", "ff.net.2")


def _linear_targets(unet: torch.nn.Module, owner_cls, suffixes: tuple[str, ...], skip=()) -> list[str]:
    names = []
    for owner_name, owner in unet.named_modules():
        if not isinstance(owner, owner_cls) or owner_name in skip:
            continue
        for name, module in owner.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(suffixes):
                names.append(f"{owner_name}.{name}" if owner_name else name)
    return sorted(names)


def temporal_convolutions(unet: torch.nn.Module) -> dict[str, torch.nn.Conv3d]:
    """The Conv3d layers of every TemporalConvLayer (kernel (3, 1, 1): across frames), by name."""
    return {f"{owner_name}.{name}": module for owner_name, owner in unet.named_modules()
            if isinstance(owner, TemporalConvLayer)
            for name, module in owner.named_modules() if isinstance(module, torch.nn.Conv3d)}


def temporal_targets(unet: torch.nn.Module, include_transformer_in: bool = True,
                     include_feed_forward: bool = False, include_temporal_convs: bool = False) -> list[str]:
    """Layers a T-LoRA adapts: the attention projections of every TransformerTemporalModel, and
    optionally their feed-forward and the Conv3d layers of every TemporalConvLayer.

    attn1 and attn2 of a temporal transformer are both self-attention across frames. Attention
    treats the frames as a set (no positional embedding), so the frame order it can use is what the
    temporal convolutions put into the features. On a base that carries little of it (the bundled
    shapes-world model) attention alone cannot learn a path, while attention and convolutions can.
    """
    suffixes = tuple(f"{a}.{p}" for a in ("attn1", "attn2") for p in ATTENTION_PROJECTIONS)
    if include_feed_forward:
        suffixes += FEED_FORWARD
    skip = () if include_transformer_in else ("transformer_in",)
    targets = _linear_targets(unet, TransformerTemporalModel, suffixes, skip)
    if include_temporal_convs:
        targets += sorted(temporal_convolutions(unet))
    return targets


def spatial_targets(unet: torch.nn.Module) -> list[str]:
    """Attention projections (self and cross) of every spatial Transformer2DModel: the S-LoRA."""
    suffixes = tuple(f"{a}.{p}" for a in ("attn1", "attn2") for p in ATTENTION_PROJECTIONS)
    return _linear_targets(unet, Transformer2DModel, suffixes)


def _temporal_transformer_identity(hidden_states, *args, return_dict: bool = True, **kwargs):
    return TransformerTemporalModelOutput(sample=hidden_states) if return_dict else (hidden_states,)


def _temporal_conv_identity(hidden_states, *args, **kwargs):
    return hidden_states


@contextlib.contextmanager
def temporal_layers_bypassed(unet: torch.nn.Module) -> Iterator[None]:
    """Make every temporal layer an identity, so the UNet3D is a per-frame image model (stage 1).

    Replaces the ``forward`` of the instances (not computed and discarded); on exit each gets back
    what it had, so it also nests inside ``compute.gradient_checkpointing`` (which wraps forwards).
    """
    swapped = []
    for module in unet.modules():
        if isinstance(module, TransformerTemporalModel):
            identity = _temporal_transformer_identity
        elif isinstance(module, TemporalConvLayer):
            identity = _temporal_conv_identity
        else:
            continue
        swapped.append((module, module.__dict__.get("forward")))
        module.forward = identity
    try:
        yield
    finally:
        for module, previous in swapped:
            if previous is None:
                del module.forward  # falls back to the class method
            else:
                module.forward = previous
