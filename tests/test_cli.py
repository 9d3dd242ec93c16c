import json
import os
import subprocess
import sys

import pytest
import torch

from cav_core import motion_training
from cav_core.cli import _lora_arg, main
from cav_core.video_io import read_video, write_video


@pytest.fixture()
def clip_file(tmp_path, clip_frames):
    return write_video(tmp_path / "ref.gif", clip_frames, 8)


def _train(tiny_base_dir, clip_file, out, *extra):
    return main(["train", "--base", tiny_base_dir, "--video", clip_file, "--prompt", "a red square moving",
                 "--appearance-prompt", "a red square", "--absorber-steps", "2", "--steps", "2",
                 "--frames", "6", "--out", str(out), "--quiet", *extra])


def test_train_inspect_sample(tiny_base_dir, clip_file, tmp_path, capsys):
    lora = tmp_path / "motion.safetensors"
    assert _train(tiny_base_dir, clip_file, lora) == 0
    assert lora.exists() and not (tmp_path / "motion.safetensors.ckpt").exists()
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kinds"] == ["temporal", "spatial", "textual_inversion"]
    assert info["training"]["steps"] == 2 and info["training"]["absorber"]["kind"] == "dual"
    assert info["training"]["absorber_token_in_prompt"] is True
    assert info["temporal"]["rank"] == 4 and "targets" not in info["temporal"]
    out = tmp_path / "sample.gif"
    assert main(["sample", "--base", tiny_base_dir, "--lora", f"{lora}:0.8", "--lora", str(lora),
                 "--appearance-lora", str(lora), "--prompt", "a blue circle", "--steps", "2",
                 "--frames", "4", "--out", str(out), "--quiet"]) == 0
    video = read_video(out)
    assert video.frames.shape == (4, 16, 16, 3)


def test_train_with_temporal_convs_saves_and_samples_them(tiny_base_dir, clip_file, tmp_path, capsys):
    lora = tmp_path / "motion_convs.safetensors"
    assert _train(tiny_base_dir, clip_file, lora, "--temporal-convs") == 0
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    assert json.loads(capsys.readouterr().out)["training"]["include_temporal_convs"] is True
    out = tmp_path / "sample.gif"
    assert main(["sample", "--base", tiny_base_dir, "--lora", str(lora), "--prompt", "a blue circle",
                 "--steps", "2", "--frames", "4", "--out", str(out), "--quiet"]) == 0
    assert read_video(out).frames.shape == (4, 16, 16, 3)


def test_train_can_leave_the_token_out_of_the_motion_caption(tiny_base_dir, clip_file, tmp_path, capsys):
    lora = tmp_path / "without_token.safetensors"
    assert _train(tiny_base_dir, clip_file, lora, "--no-absorber-token") == 0
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["training"]["absorber_token_in_prompt"] is False
    assert info["kinds"] == ["temporal", "spatial", "textual_inversion"]  # the TI is still trained and kept


def test_user_errors_are_one_line_exit_2(tiny_base_dir, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_text("this is not a video")
    code = _train(tiny_base_dir, str(bad), tmp_path / "x.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()
    assert main(["sample", "--base", str(tmp_path / "nope"), "--prompt", "x", "--out", str(tmp_path / "o.gif")]) == 2
    assert "not found" in capsys.readouterr().err


def test_interrupt_writes_nothing_then_resume(tiny_base_dir, clip_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.safetensors"
    original = motion_training.run_steps

    def interrupted(stage, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(motion_training, "run_steps", interrupted)
    assert _train(tiny_base_dir, clip_file, out, "--checkpoint-every", "1") == 130
    assert "nothing was written" in capsys.readouterr().err
    assert not out.exists()
    assert [f for f in os.listdir(tmp_path) if "partial" in f] == []
    monkeypatch.setattr(motion_training, "run_steps", original)
    assert os.path.exists(str(out) + ".ckpt")  # the absorber stage's checkpoint
    assert _train(tiny_base_dir, clip_file, out, "--checkpoint-every", "1") == 0 and out.exists()


def test_lora_arg_parsing():
    assert _lora_arg("a.safetensors:0.5") == ("a.safetensors", 0.5)
    assert _lora_arg("C:\\loras\\a.safetensors") == ("C:\\loras\\a.safetensors", 1.0)
    assert _lora_arg("dir:x/a.safetensors:-1") == ("dir:x/a.safetensors", -1.0)


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cav_core", "inspect", str(tmp_path / "missing.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: adapter file not found: {tmp_path / 'missing.safetensors'}"]


@pytest.fixture()
def other_clip_file(tmp_path):
    """8 frames of a blue square moving down, 32x24: another size and length than clip_file."""
    import numpy as np

    frames = np.full((8, 24, 32, 3), 240, np.uint8)
    for i in range(8):
        frames[i, 1 + 2 * i:7 + 2 * i, 12:18] = (30, 30, 220)
    return write_video(tmp_path / "other.gif", frames, 8)


def _inspect(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_on_several_videos_each_with_its_prompt(tiny_base_dir, clip_file, other_clip_file, tmp_path, capsys):
    out = tmp_path / "two.safetensors"
    base = ["train", "--base", tiny_base_dir, "--absorber-steps", "1", "--steps", "2", "--frames", "6", "--quiet"]
    assert main([*base, "--video", clip_file, "--prompt", "a red square moving right",
                 "--video", other_clip_file, "--prompt", "a blue square moving down", "--out", str(out)]) == 0
    record = _inspect(out, capsys)["training"]
    assert [(c["caption"], c["frames"]) for c in record["clips"]] == [("a red square moving right", 6),
                                                                      ("a blue square moving down", 6)]
    assert record["clips"][1]["size"] == [16, 16]  # read at the base's size, as the first
    assert main([*base, "--video", clip_file, "--video", other_clip_file, "--prompt", "a square moving",
                 "--out", str(out)]) == 0  # one prompt for all
    assert [c["caption"] for c in _inspect(out, capsys)["training"]["clips"]] == ["a square moving"] * 2
    code = main([*base, "--video", clip_file, "--video", other_clip_file, "--prompt", "a", "--prompt", "b",
                 "--prompt", "c", "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "2 --video but 3 --prompt" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_init_lora_continues_the_file_and_refuses_another_base(tiny_base_dir, clip_file, tmp_path, capsys):
    from dataclasses import replace

    from cav_core import load_adapter_file, save_adapter_file

    first = tmp_path / "first.safetensors"
    assert _train(tiny_base_dir, clip_file, first) == 0
    more = tmp_path / "more.safetensors"
    args = ["train", "--base", tiny_base_dir, "--video", clip_file, "--prompt", "a red square moving",
            "--steps", "3", "--frames", "6", "--init-lora", str(first), "--quiet"]
    assert main([*args, "--out", str(more)]) == 0
    info = _inspect(more, capsys)
    assert info["training"]["total_steps"] == 5
    assert info["training"]["continued_from"] == {"file": "first.safetensors", "steps": 2}
    saved, continued = load_adapter_file(first), load_adapter_file(more)
    assert all(torch.equal(saved.spatial.tensors[k], v) for k, v in continued.spatial.tensors.items())  # reused
    assert torch.equal(saved.textual_inversion.vectors, continued.textual_inversion.vectors)
    assert main([*args, "--init-lora", str(more), "--out", str(tmp_path / "third.safetensors")]) == 0
    assert _inspect(tmp_path / "third.safetensors", capsys)["training"]["total_steps"] == 8

    elsewhere = tmp_path / "elsewhere.safetensors"
    save_adapter_file(elsewhere, replace(saved, base_name="other", base_fingerprint="0123456789ab"))
    for extra, message in ((["--init-lora", str(elsewhere)], "trained on base 'other'"),
                           (["--appearance-prompt", "a red square"], "pass --absorber KIND"),
                           (["--rank", "2"], "rank 4, these settings 2")):
        code = main([*args, *extra, "--out", str(tmp_path / "x.safetensors")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.safetensors").exists()


def test_validate_every_writes_the_last_sample(tiny_base_dir, clip_file, tmp_path):
    out = tmp_path / "validated.safetensors"
    assert _train(tiny_base_dir, clip_file, out, "--validate-every", "1", "--validation-steps", "1",
                  "--validation-prompt", "a blue circle") == 0
    assert read_video(tmp_path / "validated.validation.gif").frames.shape == (6, 16, 16, 3)
