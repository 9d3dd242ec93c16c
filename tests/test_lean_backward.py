"""lean_backward: frozen convolutions, GEGLUs, SiLUs after GroupNorms and LoRA layers after LayerNorms keep
only what gradients need, and the gradients are the very ones autograd gives; training is unchanged by it."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers.models.activations import GEGLU

from cav_core import ComputeSettings, MotionSettings, train_motion
from cav_core.compute import feed_forward_checkpointing, temporal_convs_as_2d
from cav_core.lean_backward import convolution, lean_backward
from conftest import saved_bytes_and_grads, training_motion_lora
from tools.bench.saved_activations import saved_by_module

CONVOLUTIONS = (torch.nn.Conv2d, torch.nn.Conv3d)


def _kept_by(unet, x, text, kinds) -> int:
    by_module, _ = saved_by_module(unet, x, torch.tensor([500]), text)
    modules = dict(unet.named_modules())
    return sum(size for name, size in by_module.items() if isinstance(modules[name], kinds))


@pytest.mark.parametrize("autocast", [False, True])
def test_the_unet_keeps_less_and_gets_the_very_gradients(tiny_base, autocast):
    unet, x, text = training_motion_lora(tiny_base)
    gates = [m for m in unet.modules() if isinstance(m, GEGLU)]
    gated = []  # each GEGLU's GELU output: half its projection, no longer kept
    hooks = [m.proj.register_forward_hook(lambda _m, _a, out: gated.append(out.nbytes // 2)) for m in gates]
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        with temporal_convs_as_2d(unet, "cpu"):
            kept, exact = saved_bytes_and_grads(unet, x, text, contextlib.nullcontext())
            for hook in hooks:
                hook.remove()
            convs_kept, silus_kept = _kept_by(unet, x, text, CONVOLUTIONS), _kept_by(unet, x, text, torch.nn.SiLU)
            linears_kept = _kept_by(unet, x, text, torch.nn.Linear)
        with temporal_convs_as_2d(unet, "cpu", lean_backward=True):
            lean_kept, lean = saved_bytes_and_grads(unet, x, text, lean_backward(unet))
            with lean_backward(unet):
                lean_convs = _kept_by(unet, x, text, CONVOLUTIONS)
                lean_silus = _kept_by(unet, x, text, torch.nn.SiLU)
                lean_linears = _kept_by(unet, x, text, torch.nn.Linear)
    assert torch.equal(lean, exact)  # the same kernels on the same values
    assert gated and lean_kept <= kept - sum(gated)
    # every convolution of the base is frozen: none keeps its input (under autocast, as there, a cast weight)
    assert lean_convs < convs_kept / 2 if autocast else convs_kept > 0 and lean_convs == 0
    assert silus_kept > 0 and lean_silus < silus_kept / 2  # those after a GroupNorm keep nothing
    # the LoRA layers over a LayerNorm's output keep nothing; under CPU autocast the norm's output is bf16 and
    # peft casts it to the LoRA's fp32 first, a tensor of its own, which the LoRA layer keeps as autograd does
    assert lean_linears == linears_kept if autocast else lean_linears < linears_kept


def test_modules_are_restored_and_replaced_forwards_kept(tiny_base):
    unet = tiny_base.unet
    norms = [m for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    with lean_backward(unet, enabled=False):
        assert not any("forward" in m.__dict__ for m in unet.modules())
    with feed_forward_checkpointing(unet), lean_backward(unet):
        checkpointed = {m: m.forward for m in unet.modules() if isinstance(m, GEGLU)}
        assert any(isinstance(m, CONVOLUTIONS) and "forward" in m.__dict__ for m in unet.modules())
        assert all(m._forward_hooks for m in norms)
    assert all(f.__qualname__.startswith("_checkpointed") for f in checkpointed.values())  # not replaced again
    assert not any("forward" in m.__dict__ for m in unet.modules())
    assert not any(m._forward_hooks for m in norms)


@pytest.mark.parametrize("trainable", ["weight", "bias"])
def test_a_trainable_convolution_is_left_to_autograd(trainable):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    conv.weight.requires_grad_(trainable == "weight")
    conv.bias.requires_grad_(trainable == "bias")
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    torch.nn.functional.conv2d(x, conv.weight, conv.bias, 1, 1).square().sum().backward()
    expected = [t.grad.clone() for t in (x, conv.weight, conv.bias) if t.grad is not None]
    for t in (x, conv.weight, conv.bias):
        t.grad = None
    convolution(x, conv.weight, conv.bias, (1, 1), (1, 1), (1, 1), 1).square().sum().backward()
    got = [t.grad for t in (x, conv.weight, conv.bias) if t.grad is not None]
    assert len(got) == 2 and all(torch.equal(g, e) for g, e in zip(got, expected))


def test_a_frozen_convolution_under_autocast_runs_as_autocast_has_it():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        y = convolution(x, conv.weight, conv.bias, (1, 1), (1, 1), (1, 1), 1)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32


@pytest.mark.parametrize("stage, options", [("motion", {}), ("absorber", {}),
                                            ("motion", {"gradient_checkpointing": True}),
                                            ("motion", {"recompute_feed_forwards": True})])
def test_training_gives_the_same_adapter_either_way(tiny_base, clip_frames, stage, options):
    from cav_core import AbsorberSettings, train_absorber

    def tensors(compute):
        if stage == "motion":
            settings = MotionSettings(prompt="a red square moving right", steps=2)
            return train_motion(tiny_base, clip_frames, settings, compute=compute).lora.tensors
        settings = AbsorberSettings(kind="slora", prompt="a red square", steps=2)
        return train_absorber(tiny_base, clip_frames, settings, compute=compute).spatial.tensors

    chosen = ComputeSettings(**options)
    assert chosen.lean_backward
    lean, plain = tensors(chosen), tensors(replace(chosen, lean_backward=False))
    assert lean.keys() == plain.keys()
    assert all(torch.equal(lean[k], plain[k]) for k in lean)
    assert not all(np.allclose(v.numpy(), 0) for v in lean.values())


class _Attention(torch.nn.Module):
    """A LayerNorm whose output three trainable linear layers read, as a temporal attention's query, key and
    value LoRAs do."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(8).requires_grad_(False)
        self.q, self.k = torch.nn.Linear(8, 4, bias=False), torch.nn.Linear(8, 4, bias=False)
        self.v = torch.nn.Linear(8, 4)

    def forward(self, x):
        normed = self.norm(x)
        return (self.q(normed) * self.k(normed) + self.v(normed)).square().sum()


@pytest.mark.parametrize("autocast", [False, True])
def test_linear_layers_over_one_layer_norm_recompute_it_once_for_the_very_gradients(monkeypatch, autocast):
    torch.manual_seed(0)
    attention = _Attention()
    x = torch.randn(2, 5, 8, requires_grad=True)
    leaves = [x, attention.q.weight, attention.k.weight, attention.v.weight, attention.v.bias]

    def gradients(context):
        for t in leaves:
            t.grad = None
        with context, torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            loss = attention(x)
        loss.float().backward()
        return [t.grad.clone() for t in leaves]

    expected = gradients(contextlib.nullcontext())
    norms = []
    layer_norm = torch.nn.functional.layer_norm
    monkeypatch.setattr(torch.nn.functional, "layer_norm", lambda *a, **k: norms.append(1) or layer_norm(*a, **k))
    got = gradients(lean_backward(attention))
    assert all(g.dtype == e.dtype and torch.equal(g, e) for g, e in zip(got, expected))
    assert len(norms) == 2  # the forward's and one recompute shared by the three layers
