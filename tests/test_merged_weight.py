"""merged_weight: LoRAs on layers narrow for their rank run through the merged weight in training, with the
values and gradients peft's factored layers give (to float rounding), and the UNet is left as it was."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch

from cav_core import ComputeSettings, MotionSettings, adapters, train_motion
from cav_core.compute import temporal_convs_as_2d
from cav_core.lean_backward import lean_backward
from cav_core.merged_weight import merged_weight_loras, merges
from cav_core.targeting import spatial_targets, temporal_targets
from conftest import random_lora


class _Net(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)
        self.conv = torch.nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0))


def _with_lora(width: int, rank: int, dtype=torch.float32, dropout: float = 0.0, trainable: bool = True):
    from peft import LoraConfig, inject_adapter_in_model

    net = _Net(width).to(dtype)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=["proj", "conv"],
                                       lora_dropout=dropout), net)
    for name, p in net.named_parameters():
        p.requires_grad_(trainable and "lora" in name)
    return net


def test_merges_where_the_merged_weight_costs_less():
    narrow, wide = _with_lora(32, 16), _with_lora(256, 4)
    assert merges(narrow.proj) and merges(narrow.conv)  # 32*32 <= 3*16*64; 96*32 <= 3*16*128
    assert not merges(wide.proj) and not merges(wide.conv)
    # a frozen LoRA's merged weight takes no gradient: nothing to pay at any width
    frozen = _with_lora(256, 4, trainable=False)
    assert merges(frozen.proj) and merges(frozen.conv)
    # peft computes these otherwise: left to it
    assert not merges(_with_lora(32, 16, dtype=torch.float16).proj)
    assert not merges(_with_lora(32, 16, dropout=0.1).proj)


def _spatial_and_temporal(tiny_base):
    """The tiny base's UNet with a frozen random S-LoRA at strength 0.7 and a trainable random T-LoRA on the
    temporal attentions and convolutions, and an input for it."""
    unet = tiny_base.unet
    spatial = random_lora(unet, seed=2, targets=spatial_targets(unet))  # made first: making one clears the UNet
    temporal = random_lora(unet, seed=1, rank=4, targets=temporal_targets(unet, include_temporal_convs=True))
    adapters.load_lora(unet, "absorber", spatial)
    adapters.load_lora(unet, "motion", replace(temporal, alpha=6.0))  # scaling 1.5
    adapters.set_strength(unet, "absorber", 0.7)
    assert len(adapters.active_adapters(unet)) == 2
    for name, p in unet.named_parameters():
        p.requires_grad_("motion" in name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 16, 16, generator=g)
    return unet, x, torch.randn(1, 4, unet.config.cross_attention_dim, generator=g)


def _output_and_gradients(unet, x, text, context):
    unet.zero_grad(set_to_none=True)
    with context:
        out = unet(x, 500, text).sample
    out.square().mean().backward()
    return out.detach(), torch.cat([p.grad.flatten() for p in unet.parameters() if p.requires_grad])


@pytest.mark.parametrize("cpu_kernels", [False, True])
def test_values_and_gradients_are_the_factored_ones(tiny_base, cpu_kernels):
    unet, x, text = _spatial_and_temporal(tiny_base)
    layers = [m for _, m in adapters.tuner_layers(unet)]
    chosen = [m for m in layers if merges(m)]
    kinds = {type(m).__name__ for m in chosen}
    assert kinds == {"Linear", "Conv3d"}, kinds  # both kinds are taken through the merged path

    def kernels():
        stack = contextlib.ExitStack()
        if cpu_kernels:  # as training runs on the CPU: temporal convolutions as conv2d, lean backward
            stack.enter_context(temporal_convs_as_2d(unet, "cpu", lean_backward=True))
            stack.enter_context(lean_backward(unet))
        return stack

    with kernels():
        factored = _output_and_gradients(unet, x, text, contextlib.nullcontext())
    with merged_weight_loras(unet):
        assert all("forward" in m.__dict__ for m in chosen)
        with kernels():
            merged = _output_and_gradients(unet, x, text, contextlib.nullcontext())
    for a, b in zip(merged, factored):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert factored[1].abs().max() > 0
    assert not any("forward" in m.__dict__ for m in layers)  # the factored layers are back
    with merged_weight_loras(unet, enabled=False):
        assert not any("forward" in m.__dict__ for m in layers)


def test_training_gives_the_same_adapter_either_way(tiny_base, clip_frames):
    settings = MotionSettings(prompt="a red square moving right", steps=3, include_temporal_convs=True)
    chosen = ComputeSettings()
    assert chosen.merged_weight_loras
    merged = train_motion(tiny_base, clip_frames, settings, compute=chosen).lora.tensors
    factored = train_motion(tiny_base, clip_frames, settings,
                            compute=replace(chosen, merged_weight_loras=False)).lora.tensors
    assert merged.keys() == factored.keys()
    differs = [k for k in merged if not torch.equal(merged[k], factored[k])]
    assert differs  # the merged path did run: its sums are taken in another order
    for k in merged:
        torch.testing.assert_close(merged[k], factored[k], rtol=1e-3, atol=1e-5)


def test_adapters_switched_off_compute_the_base_layer(tiny_base):
    from cav_core.validation import adapters_switched_off

    unet, x, text = _spatial_and_temporal(tiny_base)
    with torch.no_grad():
        with adapters_switched_off(unet):
            base_only = unet(x, 500, text).sample
        with merged_weight_loras(unet):
            with adapters_switched_off(unet):
                switched_off = unet(x, 500, text).sample
            adapted = unet(x, 500, text).sample
    assert torch.equal(switched_off, base_only)
    assert not torch.allclose(adapted, base_only, atol=1e-4)
