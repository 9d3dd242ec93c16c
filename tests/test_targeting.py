import json

import torch
from diffusers import UNet3DConditionModel

from cav_core.targeting import spatial_targets, temporal_layers_bypassed, temporal_targets


def _modelscope_unet_on_meta():
    with open("tests/data/modelscope_unet_config.json") as f:
        config = json.load(f)
    with torch.device("meta"):
        return UNet3DConditionModel.from_config(config)


def test_modelscope_config_targets():
    """The real ModelScope 1.7B layout (random init on the meta device: no memory, no download)."""
    unet = _modelscope_unet_on_meta()
    assert sum(p.numel() for p in unet.parameters()) > 1.2e9
    temporal = temporal_targets(unet)
    spatial = spatial_targets(unet)
    # transformer_in + 6 down + 1 mid + 9 up temporal transformers, 8 projections each
    assert len(temporal) == 17 * 8
    assert len(spatial) == 16 * 8
    assert "transformer_in.transformer_blocks.0.attn1.to_q" in temporal
    assert "up_blocks.3.temp_attentions.2.transformer_blocks.0.attn2.to_out.0" in temporal
    assert all(".temp_attentions." in t or t.startswith("transformer_in.") for t in temporal)
    assert all(".attentions." in t for t in spatial)
    assert not set(temporal) & set(spatial)
    assert len(temporal_targets(unet, include_transformer_in=False)) == 16 * 8
    with_ff = temporal_targets(unet, include_feed_forward=True)
    assert len(with_ff) == 17 * 10 and "mid_block.temp_attentions.0.transformer_blocks.0.ff.net.2" in with_ff
    with_convs = temporal_targets(unet, include_temporal_convs=True)
    convs = sorted(set(with_convs) - set(temporal))
    # a TemporalConvLayer after every resnet (4 down blocks x 2, mid x 2, 4 up blocks x 3), 4 Conv3d each
    assert len(convs) == 22 * 4 and set(temporal) < set(with_convs)
    assert "down_blocks.0.temp_convs.0.conv1.2" in convs and "up_blocks.3.temp_convs.2.conv4.3" in convs


def _predict(unet, latents, text):
    return unet(latents, torch.tensor([500]), text).sample


def test_bypass_makes_frames_independent(tiny_base):
    unet = tiny_base.unet
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 5, 8, 8, generator=g)
    text = torch.randn(1, 24, 16, generator=g)
    perturbed = latents.clone()
    perturbed[:, :, 3] += torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        with temporal_layers_bypassed(unet):
            a, b = _predict(unet, latents, text), _predict(unet, perturbed, text)
        others = [0, 1, 2, 4]
        assert torch.equal(a[:, :, others], b[:, :, others])  # frame 3 leaked nowhere
        assert not torch.equal(a[:, :, 3], b[:, :, 3])
        # Without the bypass the temporal layers do mix frames, and the bypass is undone on exit.
        c, d = _predict(unet, latents, text), _predict(unet, perturbed, text)
        assert not torch.allclose(c[:, :, 0], d[:, :, 0])
    assert not any("forward" in m.__dict__ for m in unet.modules())


def test_bypass_nests_inside_gradient_checkpointing(tiny_base):
    """Inside checkpointing (which wraps forwards) a bypass gives each layer its wrapper back."""
    from cav_core.compute import gradient_checkpointing

    unet = tiny_base.unet
    with gradient_checkpointing(unet):
        wrapped = {id(m): m.__dict__.get("forward") for m in unet.modules()}
        with temporal_layers_bypassed(unet):
            pass
        assert {id(m): m.__dict__.get("forward") for m in unet.modules()} == wrapped
    assert not any("forward" in m.__dict__ for m in unet.modules())

