"""Where and in what precision the work runs: device moves, autocast, gradient checkpointing (of every
block, of chosen blocks, or of the feed-forwards alone), activations kept for backward in bf16, and the
CPU's faster kernel for temporal convolutions. What frozen layers keep for backward: ``lean_backward``."""
from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator

import torch
from diffusers.models.activations import GEGLU
from diffusers.models.resnet import ResnetBlock2D, TemporalConvLayer
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from . import lean_backward as lean

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


class _Bf16Saved:
    """An activation autograd keeps for backward, held in bf16 until backward reads it."""
    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


SMALLEST_BF16_SAVED = 2 ** 14  # elements; smaller activations are not worth a conversion


def saved_activations(module: torch.nn.Module, bf16: bool):
    """A context maker for one training forward of ``module``: with ``bf16``, the float32 activations
    autograd saves for backward are kept in bf16 (half their memory) and read back as float32 in
    backward. The forward computes as before; only the gradients see the rounding. The module's own
    weights are kept as they are (they are held anyway), and an activation that several operations save
    (the input that the LoRAs of q, k and v all keep) is converted once."""
    if not bf16:
        return contextlib.nullcontext
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}

    @contextlib.contextmanager
    def keep_in_bf16() -> Iterator[None]:
        converted: dict = {}  # this forward's conversions, by what identifies the tensor's data

        def pack(t: torch.Tensor):
            if (t.dtype != torch.float32 or t.numel() < SMALLEST_BF16_SAVED
                    or t.untyped_storage().data_ptr() in weights):
                return t
            key = (t.data_ptr(), tuple(t.shape), t.stride(), t._version)
            seen = converted.get(key)
            if seen is not None and seen[0]() is t:  # the same live tensor, not a new one at a freed address
                return seen[1]
            saved = _Bf16Saved(t.to(torch.bfloat16))
            converted[key] = (weakref.ref(t), saved)
            return saved

        def unpack(saved):
            return saved.tensor.float() if isinstance(saved, _Bf16Saved) else saved

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                yield
        finally:
            converted.clear()  # backward frees each activation as it is used; this must not hold them

    return keep_in_bf16


def grad_scaler(device: torch.device | str, mixed_precision: str):
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    if mixed_precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


# The units gradient checkpointing recomputes: each keeps only its inputs for backward.
CHECKPOINTED_BLOCKS = (Transformer2DModel, TransformerTemporalModel, ResnetBlock2D, TemporalConvLayer)


def checkpointable_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in unet.modules() if isinstance(m, CHECKPOINTED_BLOCKS)]


@contextlib.contextmanager
def gradient_checkpointing(unet: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Recompute block activations in backward instead of storing them.

    diffusers' UNet3DConditionModel does not support gradient checkpointing itself, so the
    forward of each transformer / resnet / temporal-conv block is wrapped for the block's duration.
    """
    if not enabled:
        yield
        return
    with blocks_checkpointed(checkpointable_blocks(unet)):
        yield


@contextlib.contextmanager
def blocks_checkpointed(blocks) -> Iterator[None]:
    """Recompute each of ``blocks`` in backward instead of keeping its activations, for the block;
    a block kept as it is (a bypassed temporal layer has a forward of its own) stays so."""
    with forwards_replaced(blocks, _checkpointed):
        yield


@contextlib.contextmanager
def feed_forward_checkpointing(unet: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Recompute each GEGLU feed-forward's projection and gate in backward instead of keeping them.

    A GEGLU keeps its projection's output for backward, 8 times its input's size (``lean_backward``;
    autograd alone keeps the gated half through GELU too); recomputed, it keeps its input alone. Of a
    T-LoRA step's activations these give the most memory per unit of compute recomputed on the CPU
    benchmark's base (``docs/bench``). Recomputing gives the very values kept, so training is
    unchanged. A no-op where every block is checkpointed already.
    """
    if not enabled:
        yield
        return
    with forwards_replaced([m for m in unet.modules() if isinstance(m, GEGLU)], _checkpointed):
        yield


def _checkpointed(module: torch.nn.Module):
    original = module.forward

    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(original, *args, use_reentrant=False, **kwargs)
        return original(*args, **kwargs)
    return run


@contextlib.contextmanager
def forwards_replaced(modules, make_forward) -> Iterator[None]:
    """Give each module without a ``forward`` of its own ``make_forward(module)`` for the block;
    on exit they fall back to their class's."""
    replaced = [m for m in modules if "forward" not in m.__dict__]
    for module in replaced:
        module.forward = make_forward(module)
    try:
        yield
    finally:
        for module in replaced:
            del module.forward


def frames_only(conv: torch.nn.Module) -> bool:
    """A Conv3d that mixes frames only: kernel (k, 1, 1), unit stride and dilation, zero padding over
    frames alone. The UNet3D's temporal convolutions and the LoRA convolutions on them are these."""
    return (isinstance(conv, torch.nn.Conv3d) and conv.kernel_size[1:] == (1, 1) and conv.stride == (1, 1, 1)
            and conv.dilation == (1, 1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[1:] == (0, 0))


def frames_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, frames_padding: int,
                  convolve=F.conv2d) -> torch.Tensor:
    """A frames-only Conv3d of ``weight`` on ``x`` (b, c, f, h, w), computed as the conv2d over
    (b, c, f, h*w) with its (k, 1) kernel: the same sums."""
    y = convolve(x.flatten(3), weight[..., 0], bias, (1, 1), (frames_padding, 0), (1, 1), 1)
    return y.unflatten(3, x.shape[3:])


def _frames_conv_as_2d(conv: torch.nn.Conv3d, convolve, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 5:
        return torch.nn.Conv3d.forward(conv, x)
    return frames_conv2d(x, conv.weight, conv.bias, conv.padding[0], convolve)


@contextlib.contextmanager
def temporal_convs_as_2d(unet: torch.nn.Module, device: torch.device | str,
                         lean_backward: bool = False) -> Iterator[None]:
    """On the CPU, run every frames-only Conv3d as the equal conv2d over (frames, height*width).

    PyTorch's CPU conv3d takes its slow reference kernel for these at batch 1 (a training step),
    while conv2d uses oneDNN: 1.5-1.7x faster forward and backward at the shapes-world base's sizes.
    Sampling's guided batch of 2 gets oneDNN either way; it enters this too, so that a validation
    sample taken in training is the very sample taken after it. Enter it after adapters are
    injected, so their convolutions are covered too. With ``lean_backward`` a frozen one keeps no
    input for backward, as ``lean_backward.lean_backward`` has the others. A no-op on other devices.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    convs = [m for m in unet.modules() if frames_only(m)]
    convolve = lean.convolution if lean_backward else F.conv2d
    with forwards_replaced(convs, lambda conv: functools.partial(_frames_conv_as_2d, conv, convolve)):
        yield
