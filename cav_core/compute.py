"""Where and in what precision the work runs: device moves, autocast, gradient checkpointing."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from diffusers.models.resnet import ResnetBlock2D, TemporalConvLayer
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from torch.utils.checkpoint import checkpoint

MIXED_PRECISION = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device | str) -> Iterator[torch.nn.Module]:
    """Move ``module`` to ``device`` for the block, then back where it was (frees GPU memory)."""
    home = module_device(module)
    module.to(device)
    try:
        yield module
    finally:
        module.to(home)


FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def adamw(params, **settings) -> torch.optim.AdamW:
    """AdamW without weight decay, as both training stages use it, with the fused kernel where
    every parameter is on a device that has one: one kernel over all adapter tensors instead of a
    loop of small operations per tensor (a T-LoRA has hundreds; on the CPU its step is ~4x faster)."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in tensors)
    return torch.optim.AdamW(groups, weight_decay=0.0, fused=fused or None, **settings)


def autocast(device: torch.device | str, mixed_precision: str):
    """Autocast in bf16/fp16 on the device's type (CUDA, or the CPU's own autocast); no-op for 'no'."""
    dtype = MIXED_PRECISION[mixed_precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device | str, mixed_precision: str):
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    if mixed_precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


@contextlib.contextmanager
def gradient_checkpointing(unet: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Recompute block activations in backward instead of storing them.

    diffusers' UNet3DConditionModel does not support gradient checkpointing itself, so the
    forward of each transformer / resnet / temporal-conv block is wrapped for the block's duration.
    """
    if not enabled:
        yield
        return
    wrapped = []
    for module in unet.modules():
        if isinstance(module, (Transformer2DModel, TransformerTemporalModel, ResnetBlock2D, TemporalConvLayer)):
            if "forward" in module.__dict__:
                continue  # already replaced (e.g. a bypassed temporal layer)
            original = module.forward

            def run(*args, _f=original, **kwargs):
                if torch.is_grad_enabled():
                    return checkpoint(_f, *args, use_reentrant=False, **kwargs)
                return _f(*args, **kwargs)

            module.forward = run
            wrapped.append(module)
    try:
        yield
    finally:
        for module in wrapped:
            del module.forward

