"""The motion-LoRA listing the editor's picker reads, and the preview lookup, in-process (no server)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cav_core.adapter_file import AdapterFile, save_adapter_file
from cav_core.errors import CavError
from cav_core.motion_preview import training_preview, write_preview


@pytest.fixture()
def listing(comfy, host_dirs):
    from cav_pack.nodes import lora_listing

    return lora_listing


def _adapter(path, **training):
    lora = {"blk.to_q.lora_A.weight": torch.ones(2, 4), "blk.to_q.lora_B.weight": torch.ones(4, 2)}
    from cav_core.adapters import TEMPORAL, LoraWeights

    os.makedirs(os.path.dirname(path), exist_ok=True)
    return save_adapter_file(path, AdapterFile("toy", "f" * 16, temporal=LoraWeights(TEMPORAL, 2, 2.0, lora),
                                               training=training))


def test_listing_names_previews_info_and_errors(listing, host_dirs, comfy):
    folder = host_dirs.loras
    write_preview(_adapter(os.path.join(folder, "sub", "a.safetensors"), prompt="a red square", steps=3),
                  training_preview(np.zeros((4, 16, 16, 3), np.uint8)))
    _adapter(os.path.join(folder, "b.safetensors"))
    with open(os.path.join(folder, "broken.safetensors"), "wb") as f:
        f.write(b"garbage")
    comfy.folder_paths.filename_list_cache.clear()
    rows = {row["name"]: row for row in listing.motion_lora_listing()}
    assert list(rows) == ["b.safetensors", "broken.safetensors", "sub/a.safetensors"]
    assert rows["sub/a.safetensors"]["preview"] is True and rows["b.safetensors"]["preview"] is False
    assert rows["sub/a.safetensors"]["info"]["caption"] == "a red square"
    assert rows["sub/a.safetensors"]["info"]["steps"] == 3 and rows["b.safetensors"]["info"]["rank"] == 2
    assert "error" not in rows["b.safetensors"] and "info" not in rows["broken.safetensors"]
    assert "broken.safetensors is not a readable safetensors file" in rows["broken.safetensors"]["error"]
    # cached by file version: a rewritten file is read again
    _adapter(os.path.join(folder, "b.safetensors"), prompt="now captioned")
    os.utime(os.path.join(folder, "b.safetensors"), (1, 1))
    comfy.folder_paths.filename_list_cache.clear()
    rows = {row["name"]: row for row in listing.motion_lora_listing()}
    assert rows["b.safetensors"]["info"]["caption"] == "now captioned"


def test_preview_lookup_stays_in_the_folders(listing, host_dirs, comfy, tmp_path):
    folder = host_dirs.loras
    a = _adapter(os.path.join(folder, "a.safetensors"))
    write_preview(a, training_preview(np.zeros((4, 16, 16, 3), np.uint8)))
    _adapter(os.path.join(folder, "plain.safetensors"))
    outside = _adapter(str(tmp_path / "outside.safetensors"))
    write_preview(outside, training_preview(np.zeros((4, 16, 16, 3), np.uint8)))
    comfy.folder_paths.filename_list_cache.clear()
    assert listing.preview_file("a.safetensors") == os.path.join(folder, "a.webp")
    assert listing.preview_file("plain.safetensors") is None
    for name in ("../outside.safetensors", outside, "", "sub/../../outside.safetensors"):
        with pytest.raises(CavError):
            listing.preview_file(name)
    for name in ("a.webp", "missing.safetensors"):
        with pytest.raises(LookupError):
            listing.preview_file(name)
