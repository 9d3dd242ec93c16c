"""File-name rules: reads stay inside their folder, written names are sanitized (no ComfyUI needed)."""
from __future__ import annotations

import json
import os

import pytest

from cav_core.errors import CavError


@pytest.fixture()
def paths(pack):
    from cav_pack.nodes import paths

    return paths


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "", "  ", "a\x00b", ".", "sub/.."])
def test_safe_join_refuses_escapes_and_non_names(paths, tmp_path, name):
    with pytest.raises(CavError):
        paths.safe_join(str(tmp_path), name)


def test_safe_join_accepts_names_inside(paths, tmp_path):
    assert paths.safe_join(str(tmp_path), "a/b.mp4") == str(tmp_path / "a" / "b.mp4")
    assert paths.safe_join(str(tmp_path), "a/../b.mp4") == str(tmp_path / "b.mp4")
    assert paths.safe_join(str(tmp_path), "a\\b.mp4") == str(tmp_path / "a" / "b.mp4")


def test_base_folders_list_only_unet3d_text_to_video(paths, tmp_path, tiny_base_dir):
    root = tmp_path / "diffusers"
    (root / "group").mkdir(parents=True)
    os.symlink(tiny_base_dir, root / "modelscope")
    os.symlink(tiny_base_dir, root / "group" / "zeroscope")
    image_model = root / "sd15"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (image_model / sub).mkdir(parents=True)
    (image_model / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    (root / ".hidden").mkdir()
    assert paths.find_base_folders([str(root), str(tmp_path / "missing")]) == ["group/zeroscope", "modelscope"]
    assert paths.base_choices([str(root)])[0] == paths.BUNDLED_BASE
    assert paths.resolve_base_choice(paths.BUNDLED_BASE, []) == "toy"
    assert paths.resolve_base_choice("group/zeroscope", [str(root)]) == str(root / "group" / "zeroscope")
    with pytest.raises(CavError, match="UNet3DConditionModel"):
        paths.resolve_base_choice("sd15", [str(root)])
    with pytest.raises(CavError, match="outside"):
        paths.resolve_base_choice("../../etc", [str(root)])
    with pytest.raises(CavError, match="not a folder in models/diffusers"):
        paths.resolve_base_choice("nothing_here", [str(root)])


def test_reference_choices_and_resolution(paths, tmp_path):
    inp, out, tmp = (tmp_path / d for d in ("input", "output", "temp"))
    for d in (inp, out, tmp):
        d.mkdir()
    (inp / "clip.mp4").write_bytes(b"x")
    (inp / "still.png").write_bytes(b"x")
    (out / "made.gif").write_bytes(b"x")
    choices = paths.reference_choices(str(inp))
    assert choices[:2] == ["zigzag.mp4 [bundled]", "figure_eight.mp4 [bundled]"]
    assert "clip.mp4" in choices and "still.png" not in choices
    bundled = paths.resolve_reference_choice("zigzag.mp4 [bundled]", str(inp), str(out), str(tmp))
    assert os.path.isfile(bundled) and bundled.endswith("zigzag.mp4")
    assert paths.resolve_reference_choice("clip.mp4", str(inp), str(out), str(tmp)) == str(inp / "clip.mp4")
    assert paths.resolve_reference_choice("made.gif [output]", str(inp), str(out), str(tmp)) == str(out / "made.gif")
    for bad, message in [("../secret.mp4", "outside"), ("../input/clip.mp4 [output]", "outside"),
                         ("/etc/hostname", "absolute"), ("gone.mp4", "not found")]:
        with pytest.raises(CavError, match=message):
            paths.resolve_reference_choice(bad, str(inp), str(out), str(tmp))


def test_lora_names_are_sanitized_and_never_overwritten_by_default(paths, tmp_path):
    assert paths.lora_file_name("../../evil") == "evil.safetensors"
    assert paths.lora_file_name("my motion.safetensors") == "my motion.safetensors"
    assert paths.lora_file_name("..") == "motion_lora.safetensors"
    folder = str(tmp_path)
    first = paths.save_path(folder, "a/b/zig", overwrite=False)
    assert first == str(tmp_path / "zig.safetensors")
    open(first, "w").close()
    assert paths.save_path(folder, "zig", overwrite=False) == str(tmp_path / "zig_00001.safetensors")
    assert paths.save_path(folder, "zig", overwrite=True) == first


def test_find_in_folders_checks_every_candidate(paths, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "x.safetensors").write_bytes(b"x")
    assert paths.find_in_folders([str(a), str(b)], "x.safetensors") == str(b / "x.safetensors")
    with pytest.raises(CavError, match="outside"):
        paths.find_in_folders([str(a), str(b)], "../b/x.safetensors")
    with pytest.raises(CavError, match="not found"):
        paths.find_in_folders([str(a)], "y.safetensors")


def test_a_save_name_too_long_for_the_file_system_is_refused_with_a_message(paths, tmp_path):
    with pytest.raises(CavError, match="too long"):
        paths.save_path(str(tmp_path), "m" * 300, overwrite=False)
    assert paths.save_path(str(tmp_path), "m" * 100, overwrite=False).endswith("m" * 100 + ".safetensors")
    assert list(tmp_path.iterdir()) == []  # nothing written
