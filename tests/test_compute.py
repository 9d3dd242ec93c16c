"""compute: the CPU's conv2d path for temporal convolutions gives conv3d's numbers."""
from __future__ import annotations

import pytest
import torch

from cav_core import adapters
from cav_core.compute import temporal_convs_as_2d
from cav_core.targeting import temporal_targets
from conftest import random_lora


def _grads(conv, x):
    x = x.detach().requires_grad_(True)
    conv.zero_grad()
    y = conv(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), x.grad, conv.weight.grad.clone(), None if conv.bias is None else conv.bias.grad.clone()


@pytest.mark.parametrize("kernel, padding, permuted", [((3, 1, 1), (1, 0, 0), False),
                                                         ((3, 1, 1), (1, 0, 0), True),
                                                         ((1, 1, 1), (0, 0, 0), False)])
def test_frames_only_conv_matches_conv3d_values_and_gradients(kernel, padding, permuted):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(6, 5, kernel, padding=padding)
    # permuted: a non-contiguous input, as a transposed hidden state would be
    x = torch.randn(1, 6, 7, 3, 4).transpose(3, 4) if permuted else torch.randn(1, 6, 7, 4, 3)
    expected = _grads(conv, x)
    with temporal_convs_as_2d(conv, "cpu"):
        assert "forward" in conv.__dict__
        got = _grads(conv, x)
    assert "forward" not in conv.__dict__  # restored on exit
    for e, g in zip(expected, got):
        if e is not None:
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_spatial_and_strided_convs_are_left_alone():
    convs = torch.nn.ModuleList([torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.Conv3d(4, 4, (3, 1, 1), stride=2),
                                 torch.nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 1, 0))])
    with temporal_convs_as_2d(convs, "cpu"):
        assert all("forward" not in c.__dict__ for c in convs)


def test_unet_with_temporal_conv_loras_predicts_the_same(tiny_base):
    unet = tiny_base.unet
    targets = temporal_targets(unet, include_temporal_convs=True)
    lora = random_lora(unet, seed=1, targets=targets)  # non-zero A and B, so the LoRA convs count
    adapters.load_lora(unet, "motion", lora)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 8, 8, generator=g)
    text = torch.randn(1, 4, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        expected = unet(x, 10, text).sample
        with temporal_convs_as_2d(unet, "cuda"):  # other devices: nothing replaced
            assert not any("forward" in m.__dict__ for m in unet.modules() if isinstance(m, torch.nn.Conv3d))
        with temporal_convs_as_2d(unet, "cpu"):
            replaced = [n for n, m in unet.named_modules() if "forward" in m.__dict__]
            got = unet(x, 10, text).sample
    assert any(".lora_A." in n for n in replaced) and any(".lora_B." in n for n in replaced)
    assert any(n.endswith("base_layer") for n in replaced)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not any("forward" in m.__dict__ for m in unet.modules() if isinstance(m, torch.nn.Conv3d))
