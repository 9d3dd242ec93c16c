"""Shared fixtures: a tiny random-init text-to-video base in the diffusers folder layout."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from cav_core import adapters
from cav_core.adapters import TEMPORAL, LoraWeights
from cav_core.targeting import temporal_targets

torch.set_num_threads(1)  # tiny models: threads cost more than they give


def build_tiny_base_folder(path: str, cross_dim: int = 16, seed: int = 0) -> str:
    """Write a tiny UNet3D text-to-video model (random weights) as ModelScope lays it out."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cav_core.shapes_world.architecture import build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        cross_attention_dim=cross_dim, attention_head_dim=4)
    # Random init leaves zero-initialised output layers; give every weight a value so that
    # adapters and temporal layers visibly change the output.
    with torch.no_grad():
        for p in unet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cross_dim, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    unet.save_pretrained(os.path.join(path, "unet"))
    vae.save_pretrained(os.path.join(path, "vae"))
    text_encoder.save_pretrained(os.path.join(path, "text_encoder"))
    tokenizer.save_pretrained(os.path.join(path, "tokenizer"))
    scheduler.save_pretrained(os.path.join(path, "scheduler"))
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "TextToVideoSDPipeline", "unet": ["diffusers", "UNet3DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"]}, f)
    with open(os.path.join(path, "cav_recipe.json"), "w") as f:
        json.dump({"name": "tiny", "video": {"frames": 6}}, f)  # short clips keep the tests fast
    return path


def random_lora(unet, seed: int, rank: int = 2, role: str = TEMPORAL, targets=None) -> LoraWeights:
    """A LoRA with non-zero A and B, made through peft on the real target layers."""
    g = torch.Generator().manual_seed(seed)
    adapters.inject_lora(unet, "tmp", targets or temporal_targets(unet), rank, float(rank))
    lora = adapters.extract_lora(unet, "tmp", role, rank, float(rank))
    adapters.remove_adapters(unet)
    return LoraWeights(role, rank, float(rank),
                       {k: torch.randn(v.shape, generator=g) * 0.2 for k, v in lora.tensors.items()})


def training_motion_lora(tiny_base):
    """The tiny base's UNet with a random T-LoRA as the only trainable weights, and an input for it."""
    unet = tiny_base.unet
    adapters.load_lora(unet, "motion", random_lora(unet, seed=1, targets=temporal_targets(unet)))
    for name, p in unet.named_parameters():
        p.requires_grad_("motion" in name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 6, 16, 16, generator=g)
    return unet, x, torch.randn(1, 4, unet.config.cross_attention_dim, generator=g)


def saved_bytes_and_grads(unet, x, text, context) -> tuple[int, torch.Tensor]:
    """Bytes of the tensors autograd keeps outside checkpointed regions, and the LoRA's gradients."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    unet.zero_grad(set_to_none=True)
    with context, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = unet(x, 500, text).sample.square().mean()
    loss.backward()
    return sum(storages.values()), torch.cat([p.grad.flatten() for p in unet.parameters() if p.requires_grad])


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> str:
    return build_tiny_base_folder(str(tmp_path_factory.mktemp("tiny_base")))


@pytest.fixture()
def tiny_base(tiny_base_dir):
    from cav_core.base_model import load_base

    return load_base(tiny_base_dir)


@pytest.fixture(scope="session")
def clip_frames() -> np.ndarray:
    """6 frames of a red square moving right on white, 16x16."""
    frames = np.full((6, 16, 16, 3), 250, np.uint8)
    for i in range(6):
        frames[i, 5:10, 1 + 2 * i:6 + 2 * i] = (220, 30, 30)
    return frames
