import json
import os
import shutil

import pytest
import torch

from cav_core.base_model import architecture_fingerprint, inspect_base_folder, load_base
from cav_core.errors import CavError


def test_loads_diffusers_folder_frozen(tiny_base_dir):
    base = load_base(tiny_base_dir)
    assert type(base.unet).__name__ == "UNet3DConditionModel"
    assert not any(p.requires_grad for p in base.unet.parameters())
    assert base.vae_scale_factor == 2 and base.default_size == (16, 16)
    assert base.name == os.path.basename(tiny_base_dir)
    assert len(base.fingerprint) == 16


def test_fp16_variant_only_folder_loads(tiny_base_dir, tmp_path):
    from diffusers import UNet3DConditionModel

    folder = tmp_path / "fp16"
    shutil.copytree(tiny_base_dir, folder)
    unet = UNet3DConditionModel.from_pretrained(folder / "unet")
    shutil.rmtree(folder / "unet")
    unet.to(torch.float16).save_pretrained(folder / "unet", variant="fp16")
    assert any(".fp16." in n for n in os.listdir(folder / "unet"))
    base = load_base(str(folder))
    assert base.unet.dtype == torch.float32  # loaded at the requested dtype


def test_image_model_folder_is_refused_with_what_was_found(tiny_base_dir, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_base_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(_class_name="StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"])
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CavError, match="StableDiffusionPipeline with unet=UNet2DConditionModel"):
        inspect_base_folder(str(folder))


def test_missing_subfolder_and_missing_index(tiny_base_dir, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(tiny_base_dir, folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(CavError, match="missing the subfolder\\(s\\) vae"):
        load_base(str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CavError, match="no model_index.json"):
        load_base(str(tmp_path / "empty"))
    with pytest.raises(CavError, match="not found"):
        load_base(str(tmp_path / "nowhere"))


def test_fingerprint_depends_on_architecture_not_sample_size():
    from diffusers import UNet3DConditionModel

    cfg = dict(UNet3DConditionModel.load_config("tests/data/modelscope_unet_config.json"))
    other = dict(cfg, sample_size=72)  # ZeroScope-like: same weights layout
    wider = dict(cfg, cross_attention_dim=768)
    assert architecture_fingerprint(cfg, 1024) == architecture_fingerprint(other, 1024)
    assert architecture_fingerprint(cfg, 1024) != architecture_fingerprint(wider, 1024)


def test_frame_size_rule_and_separate_vae_dtype(tiny_base_dir):
    base = load_base(tiny_base_dir, vae_dtype=torch.float64)
    assert base.vae.dtype == torch.float64 and base.unet.dtype == torch.float32
    assert base.size_multiple == 4  # VAE x2, UNet x2
    base.check_frame_size(16, 24)
    with pytest.raises(CavError, match="multiples of 4"):
        base.check_frame_size(18, 16)
