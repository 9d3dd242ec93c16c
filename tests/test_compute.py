"""compute: the CPU's conv2d path for temporal convolutions gives conv3d's numbers; activations kept in bf16;
feed-forwards recomputed in backward."""
from __future__ import annotations

import pytest
import torch

from cav_core import ComputeSettings, adapters
from cav_core.compute import temporal_convs_as_2d
from cav_core.targeting import temporal_targets
from conftest import random_lora, saved_bytes_and_grads, training_motion_lora


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


def _lora_grads(unet, x, text, keep) -> torch.Tensor:
    unet.zero_grad(set_to_none=True)
    with keep():
        loss = unet(x, 500, text).sample.square().mean()
    loss.backward()
    return torch.cat([p.grad.flatten() for n, p in unet.named_parameters() if p.requires_grad])


def test_bf16_saved_activations_give_nearly_the_same_gradients(tiny_base, monkeypatch):
    from cav_core import compute

    unet, x, text = training_motion_lora(tiny_base)
    converted = []
    monkeypatch.setattr(compute._Bf16Saved, "__init__",
                        lambda self, t: (converted.append(t.numel()), setattr(self, "tensor", t))[0])
    exact = _lora_grads(unet, x, text, compute.saved_activations(unet, bf16=False))
    assert not converted
    rounded = _lora_grads(unet, x, text, compute.saved_activations(unet, bf16=True))
    assert converted and min(converted) >= compute.SMALLEST_BF16_SAVED
    assert not torch.equal(rounded, exact)  # backward did read the rounded activations
    assert torch.nn.functional.cosine_similarity(rounded, exact, dim=0) > 0.999
    assert (rounded - exact).norm() < 0.02 * exact.norm()
    assert all(p.dtype == torch.float32 for p in unet.parameters())


def test_recomputed_feed_forwards_keep_less_and_give_the_same_gradients(tiny_base):
    import contextlib

    from diffusers.models.activations import GEGLU

    from cav_core import compute

    unet, x, text = training_motion_lora(tiny_base)
    gates = [m for m in unet.modules() if isinstance(m, GEGLU)]
    assert gates  # the UNet3D's spatial and temporal transformers all use GEGLU feed-forwards
    projections = []
    hooks = [m.proj.register_forward_hook(lambda _m, _a, out: projections.append(out.nbytes)) for m in gates]
    kept, exact = saved_bytes_and_grads(unet, x, text, contextlib.nullcontext())
    for hook in hooks:
        hook.remove()
    recomputed_kept, recomputed = saved_bytes_and_grads(unet, x, text, compute.feed_forward_checkpointing(unet))
    assert len(projections) == len(gates)
    assert recomputed_kept <= kept - sum(projections)  # no GEGLU keeps its projection's output
    torch.testing.assert_close(recomputed, exact, rtol=0, atol=1e-7)  # recomputing gives the very values kept
    assert not any("forward" in m.__dict__ for m in gates)  # unwrapped again
    with compute.feed_forward_checkpointing(unet, enabled=False):
        assert not any("forward" in m.__dict__ for m in gates)


def test_feed_forwards_are_recomputed_when_asked_unless_every_block_is():
    assert not ComputeSettings().feed_forward_checkpointing
    assert ComputeSettings(recompute_feed_forwards=True).feed_forward_checkpointing
    # not recomputed twice
    assert not ComputeSettings(recompute_feed_forwards=True, gradient_checkpointing=True).feed_forward_checkpointing


def test_an_activation_saved_by_several_layers_is_converted_once(monkeypatch):
    from cav_core import compute

    layers = torch.nn.ModuleList(torch.nn.Linear(128, 128) for _ in range(3))  # q, k and v of one input
    x = torch.randn(256, 128)
    converted = []
    monkeypatch.setattr(compute._Bf16Saved, "__init__",
                        lambda self, t: (converted.append(t.shape), setattr(self, "tensor", t))[0])
    with compute.saved_activations(layers, bf16=True)():
        out = sum(layer(x).sum() for layer in layers)
    assert converted == [x.shape]  # the shared input once; the weights, kept anyway, never
    out.backward()
    rounded = x.bfloat16().float().sum(0)  # d(sum(x W^T + b))/dW: each row, the sum of the saved inputs
    for layer in layers:
        torch.testing.assert_close(layer.weight.grad[0], rounded)
        assert not torch.allclose(layer.weight.grad[0], x.sum(0), rtol=0, atol=1e-4)
