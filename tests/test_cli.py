import json
import os
import subprocess
import sys

import pytest

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


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


@pytest.mark.parametrize("weight", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_and_inf_weights_are_refused(tiny_base_dir, tmp_path, capsys, weight):
    from cav_core.errors import CavError

    with pytest.raises(CavError, match="finite number"):
        _lora_arg(f"a.safetensors:{weight}")
    common = ["--base", tiny_base_dir, "--prompt", "x", "--out", str(tmp_path / "o.gif")]
    assert main(["sample", "--lora", f"a.safetensors:{weight}", *common]) == 2
    _one_error_line(capsys, f"a.safetensors:{weight}: the weight must be a finite number")
    assert main(["sample", "--appearance-lora", f"a.safetensors:{weight}", *common]) == 2
    _one_error_line(capsys, "finite number")
    assert os.listdir(tmp_path) == []
