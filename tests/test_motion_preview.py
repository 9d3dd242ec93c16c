"""A motion LoRA's animated preview beside its file, and the header info a file picker shows."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cav_core.adapter_file import AdapterFile, preview_path, save_adapter_file
from cav_core.adapter_info import file_info, layer_kinds
from cav_core.errors import CavError
from cav_core.motion_preview import (MAX_WIDTH, PREVIEW_HEIGHT, MotionPreview, merged_preview, read_preview,
                                     training_preview, write_preview)
from cav_core.video_io import read_video


def _moving(count=6, height=16, width=16, colour=(220, 30, 30)) -> np.ndarray:
    frames = np.full((count, height, width, 3), 250, np.uint8)
    for i in range(count):
        x = i * (width - 4) // max(1, count - 1)
        frames[i, height // 3:height // 3 + 4, x:x + 4] = colour
    return frames


def _webp(path) -> Image.Image:
    image = Image.open(path)
    assert image.format == "WEBP" and getattr(image, "is_animated", False)
    image.load()  # webp states a frame's duration once it is decoded
    return image


def test_training_preview_shows_the_reference_beside_the_sample_small_and_looping(tmp_path):
    reference = _moving()
    sample = np.linspace(0, 1, 6)[:, None, None, None] * np.ones((6, 16, 16, 3))  # float 0..1, as sampled
    preview = training_preview(reference, sample, fps=8.0, caption="a blue circle")
    label = 12
    assert preview.frames.shape == (6, PREVIEW_HEIGHT + label, 2 * PREVIEW_HEIGHT + 2, 3)
    left = preview.frames[:, label:, :PREVIEW_HEIGHT]
    assert left[0].mean() > 200 and not np.array_equal(left[0], left[-1])  # the reference, moving
    right = preview.frames[:, label:, PREVIEW_HEIGHT + 2:]
    assert right[0].max() == 0 and right[-1].min() == 255  # the sample, dark to light

    adapter = tmp_path / "zigzag.safetensors"
    path = write_preview(adapter, preview)
    assert path == str(tmp_path / "zigzag.webp") == preview_path(adapter)
    image = _webp(path)
    assert image.info["loop"] == 0 and image.info["duration"] == 125
    assert os.path.getsize(path) < 60_000
    assert read_video(path).frames.shape == (6, PREVIEW_HEIGHT + label, 2 * PREVIEW_HEIGHT + 2, 3)
    assert sorted(os.listdir(tmp_path)) == ["zigzag.webp"]  # written atomically: no temporary left


def test_a_reference_alone_keeps_its_aspect_at_the_preview_height():
    wide = training_preview(_moving(count=24, height=320, width=576), fps=8.0)
    assert wide.frames.shape == (24, PREVIEW_HEIGHT, 173, 3)  # 576 x 320 at 96 px tall, no label
    long = training_preview(_moving(count=80), fps=8.0)
    assert len(long.frames) == 32  # resampled evenly, so a preview stays small


def test_a_merged_preview_puts_the_sources_side_by_side(tmp_path):
    a = training_preview(_moving(), fps=8.0)
    write_preview(tmp_path / "b.safetensors", training_preview(_moving(count=3, colour=(30, 30, 220)), fps=4.0))
    b = read_preview(tmp_path / "b.safetensors")  # as a loaded file carries it: its bytes
    assert b.frames is None and b.data[:4] == b"RIFF"
    frames, fps = b.clip()
    assert frames.shape == (3, PREVIEW_HEIGHT, PREVIEW_HEIGHT, 3) and fps == pytest.approx(4.0)
    merged = merged_preview([a, None, b])
    assert merged.frames.shape == (6, PREVIEW_HEIGHT, 2 * PREVIEW_HEIGHT + 2, 3)  # the longer length
    assert merged.fps == 8.0
    blue = merged.frames[:, :, PREVIEW_HEIGHT + 2:, 2]
    assert (blue > 150).any()
    assert merged_preview([None, None]) is None
    assert merged_preview([MotionPreview(data=b"not a webp")]) is None  # left out, not an error
    many = merged_preview([a] * 8)
    assert many.frames.shape[2] <= MAX_WIDTH and many.frames.shape[1] < PREVIEW_HEIGHT
    labelled = training_preview(_moving(), _moving(), caption="new")
    assert merged_preview([labelled, a]).frames.shape[1] == PREVIEW_HEIGHT + 12  # each keeps its height


def test_writing_keeps_a_loaded_preview_byte_for_byte_and_none_removes_a_stale_one(tmp_path):
    first = tmp_path / "first.safetensors"
    write_preview(first, training_preview(_moving(), fps=8.0))
    loaded = read_preview(first)
    copy = tmp_path / "copy.safetensors"
    write_preview(copy, loaded)
    assert (tmp_path / "copy.webp").read_bytes() == (tmp_path / "first.webp").read_bytes()
    assert write_preview(copy, None) is None and not (tmp_path / "copy.webp").exists()
    assert read_preview(copy) is None
    held = _moving(count=4)
    held[1] = held[0]  # the encoder stores one frame shown twice as long
    write_preview(copy, training_preview(held, fps=8.0))
    frames, fps = read_preview(copy).clip()
    assert len(frames) == 4 and fps == pytest.approx(8.0) and np.array_equal(frames[0], frames[1])
    (tmp_path / "huge.webp").write_bytes(b"\0" * (4 * 2**20 + 1))
    assert read_preview(tmp_path / "huge.safetensors") is None  # not a preview: never carried along


def test_preview_clips_must_be_frames():
    with pytest.raises(CavError, match="frames"):
        training_preview(np.zeros((16, 16, 3), np.uint8))


# ---- header info ----------------------------------------------------------------------------

def _saved(path, base, lora, **training):
    return save_adapter_file(path, AdapterFile(base.name, base.fingerprint, temporal=lora, training=training))


def test_info_comes_from_the_header(tiny_base, tmp_path):
    from conftest import random_lora

    from cav_core.targeting import temporal_targets

    targets = temporal_targets(tiny_base.unet, include_temporal_convs=True)
    lora = random_lora(tiny_base.unet, 0, rank=3, targets=targets)
    path = _saved(tmp_path / "m.safetensors", tiny_base, lora, prompt="a red square moving", steps=5,
                  total_steps=9, recipe="tiny", absorber={"kind": "dual"})
    info = file_info(path)
    assert {k: info[k] for k in ("base", "caption", "steps", "rank", "layers", "recipe", "absorber",
                                 "motiondirector")} == {
        "base": tiny_base.name, "caption": "a red square moving", "steps": 9, "rank": 3, "layers": len(targets),
        "recipe": "tiny", "absorber": "dual", "motiondirector": False}
    assert info["layer_kinds"] == ["attention", "transformer_in", "temporal convs"]
    json.dumps(info)  # what the route sends


def test_info_of_merged_and_motiondirector_files(tiny_base, tmp_path):
    from conftest import random_lora
    from test_motiondirector_import import md_pairs, write_pt, write_safetensors

    merged = _saved(tmp_path / "merged.safetensors", tiny_base, random_lora(tiny_base.unet, 1),
                    merged_from=[{"file": "a", "weight": 0.6, "training": {}}, {"file": "b", "weight": 0.4}])
    info = file_info(merged)
    assert info["merged_from"] == [{"file": "a", "weight": 0.6}, {"file": "b", "weight": 0.4}]
    assert info["absorber"] == "none" and info["caption"] is None and info["steps"] is None
    pairs = md_pairs(tiny_base.unet, rank=3)
    pt = file_info(write_pt(tmp_path / "md.pt", pairs))
    assert pt["motiondirector"] is True and pt["rank"] is None
    export = file_info(write_safetensors(tmp_path / "md.safetensors", pairs))
    assert export["motiondirector"] is True and (export["rank"], export["layers"]) == (3, len(pairs))


def test_unreadable_and_foreign_files_are_clear_errors(tmp_path):
    import torch
    from safetensors.torch import save_file

    from cav_core.adapter_file import FORMAT

    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CavError, match="junk.safetensors is not a readable safetensors file"):
        file_info(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "image_lora.safetensors"))
    with pytest.raises(CavError, match="not a Customize-A-Video adapter"):
        file_info(tmp_path / "image_lora.safetensors")
    save_file({"temporal.x": torch.zeros(2)}, str(tmp_path / "damaged.safetensors"),
              metadata={"format": FORMAT, "format_version": "1", "temporal": '{"rank": 2, "targ', "training": "{}"})
    with pytest.raises(CavError, match="damaged.safetensors has damaged metadata"):
        file_info(tmp_path / "damaged.safetensors")
    save_file({"spatial.x": torch.zeros(2)}, str(tmp_path / "absorber_only.safetensors"),
              metadata={"format": FORMAT, "format_version": "1", "kinds": "spatial", "spatial": "{}"})
    with pytest.raises(CavError, match="holds no motion"):
        file_info(tmp_path / "absorber_only.safetensors")
    with pytest.raises(CavError, match="not found"):
        file_info(tmp_path / "absent.safetensors")


def test_layer_kinds_are_named_by_layer():
    assert layer_kinds(["down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.to_q",
                        "down_blocks.0.temp_attentions.0.transformer_blocks.0.ff.net.2",
                        "transformer_in.transformer_blocks.0.attn2.to_k"]) == ["attention", "transformer_in",
                                                                               "feed-forward"]
    assert layer_kinds([]) == []
