import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cav_core import motion_training
from cav_core.cli import main
from cav_core.cli_common import lora_arg
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
    # always a preview beside it: without validation samples, the reference as trained (16 px at 96 px)
    preview = read_video(tmp_path / "motion.webp").frames
    assert preview.shape == (6, 96, 96, 3) and not np.array_equal(preview[0], preview[-1])
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kinds"] == ["temporal", "spatial", "textual_inversion"]
    assert info["training"]["steps"] == 2 and info["training"]["absorber"]["kind"] == "dual"
    assert info["training"]["absorber_token_in_prompt"] is True
    assert info["training"]["bf16_activations"] is False
    assert info["training"]["recompute_feed_forwards"] is False  # the default
    assert info["temporal"]["rank"] == 4 and "targets" not in info["temporal"]
    out = tmp_path / "sample.gif"
    assert main(["sample", "--base", tiny_base_dir, "--lora", f"{lora}:0.8", "--lora", str(lora),
                 "--appearance-lora", str(lora), "--prompt", "a blue circle", "--steps", "2",
                 "--frames", "4", "--out", str(out), "--quiet"]) == 0
    video = read_video(out)
    assert video.frames.shape == (4, 16, 16, 3)


@pytest.mark.parametrize("flag, setting, record", [("--bf16-activations", "saved_activations", "bf16_activations"),
                                                    ("--recompute-feed-forwards", "feed_forward_checkpointing",
                                                     "recompute_feed_forwards")])
def test_memory_options_reach_both_stages_and_the_record(tiny_base_dir, clip_file, tmp_path, monkeypatch,
                                                         flag, setting, record):
    from cav_core import absorber_training, compute
    from cav_core.adapter_file import load_adapter_file

    asked = []

    def recording(module, enabled):
        asked.append(enabled)
        return getattr(compute, setting)(module, enabled)

    monkeypatch.setattr(motion_training, setting, recording)
    monkeypatch.setattr(absorber_training, setting, recording)
    lora = tmp_path / "motion.safetensors"
    assert _train(tiny_base_dir, clip_file, lora, flag) == 0
    assert asked == [True, True]  # the absorber, then the T-LoRA
    assert load_adapter_file(lora).training[record] is True


@pytest.mark.parametrize("target, told", [("1e-9", True), ("0", False)])
def test_memory_target_recomputes_blocks_and_says_so(tiny_base_dir, clip_file, tmp_path, capsys, target, told):
    args = ["train", "--base", tiny_base_dir, "--video", clip_file, "--prompt", "a red square moving",
            "--absorber", "none", "--steps", "1", "--frames", "6", "--out", str(tmp_path / "m.safetensors"),
            "--memory-target", target]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert ("UNet blocks that keep the most are recomputed in backward" in err) is told  # 0: no target at all
    assert "estimated to peak" in err if told else "estimated" not in err


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


def test_train_min_timestep_is_recorded_and_checked_against_the_schedule(tiny_base_dir, clip_file, tmp_path, capsys):
    lora = tmp_path / "noisy.safetensors"
    assert _train(tiny_base_dir, clip_file, lora, "--min-timestep", "600") == 0
    capsys.readouterr()
    assert main(["inspect", str(lora)]) == 0
    assert json.loads(capsys.readouterr().out)["training"]["min_timestep"] == 600
    assert _train(tiny_base_dir, clip_file, tmp_path / "none.safetensors", "--min-timestep", "1000") == 2
    assert "leaves no timestep" in capsys.readouterr().err and not (tmp_path / "none.safetensors").exists()


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
    assert lora_arg("a.safetensors:0.5") == ("a.safetensors", 0.5)
    assert lora_arg("C:\\loras\\a.safetensors") == ("C:\\loras\\a.safetensors", 1.0)
    assert lora_arg("dir:x/a.safetensors:-1") == ("dir:x/a.safetensors", -1.0)


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cav_core", "inspect", str(tmp_path / "missing.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: adapter file not found: {tmp_path / 'missing.safetensors'}"]


def _adapter_file(path, base, seed, rank=2, fingerprint=None):
    from cav_core.adapter_file import AdapterFile, save_adapter_file
    from conftest import random_lora

    lora = random_lora(base.unet, seed, rank=rank)
    return save_adapter_file(path, AdapterFile(base.name, fingerprint or base.fingerprint, temporal=lora,
                                               training={"steps": seed}))


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


def test_merge_writes_one_lora_that_is_the_weighted_stack(tiny_base, tmp_path, capsys):
    import torch

    from cav_core.adapter_file import load_adapter_file

    a = _adapter_file(tmp_path / "a.safetensors", tiny_base, 1, rank=2)
    b = _adapter_file(tmp_path / "b.safetensors", tiny_base, 2, rank=3)
    out = tmp_path / "ab.safetensors"
    assert main(["merge", f"{a}:0.6", f"{b}:-0.4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    merged, la, lb = (load_adapter_file(p) for p in (out, a, b))
    assert merged.temporal.rank == 5 and merged.kinds == ["temporal"]
    assert [(s["file"], s["weight"], s["training"]) for s in merged.training["merged_from"]] == [
        ("a.safetensors", 0.6, {"steps": 1}), ("b.safetensors", -0.4, {"steps": 2})]
    for t in merged.temporal.targets:
        expected = 0.6 * la.temporal.delta(t) - 0.4 * lb.temporal.delta(t)
        assert torch.allclose(merged.temporal.delta(t), expected, atol=1e-6)
    cut = tmp_path / "cut.safetensors"
    assert main(["merge", str(a), str(b), "--max-rank", "1", "--out", str(cut)]) == 0  # weights default to 1
    captured = capsys.readouterr()
    assert captured.out.strip() == str(cut)
    record = load_adapter_file(cut).training
    assert record["max_rank"] == 1 and [s["weight"] for s in record["merged_from"]] == [1.0, 1.0]
    assert "relative error of the rank-1 merge" in captured.err
    assert float(captured.err.split(":")[-1]) == pytest.approx(record["relative_error"], rel=1e-5)
    assert record["relative_error"] > 0


def test_merge_refuses_other_bases_bad_weights_and_missing_files(tiny_base, tmp_path, capsys):
    a = _adapter_file(tmp_path / "a.safetensors", tiny_base, 1)
    wide = _adapter_file(tmp_path / "wide.safetensors", tiny_base, 2, fingerprint="0123456789abcdef")
    out = tmp_path / "out.safetensors"
    assert main(["merge", a, wide, "--out", str(out)]) == 2
    _one_error_line(capsys, "wide.safetensors was trained on base", "only LoRAs of one base")
    assert main(["merge", a, f"{a}:nan", "--out", str(out)]) == 2
    _one_error_line(capsys, "finite number")
    assert main(["merge", a, str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
    _one_error_line(capsys, "not found")
    assert main(["merge", a, "--out", str(tmp_path / "out.gif")]) == 2
    _one_error_line(capsys, ".safetensors")
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["a.safetensors", "wide.safetensors"]


def test_import_converts_a_motiondirector_file_that_then_samples(tiny_base, tiny_base_dir, tmp_path, capsys):
    import torch

    from cav_core.adapter_file import load_adapter_file
    from test_motiondirector_import import md_pairs, write_pt

    pairs = md_pairs(tiny_base.unet, rank=4)
    source = write_pt(tmp_path / "500_unet.pt", pairs)
    out = tmp_path / "imported.safetensors"
    assert main(["import", source, "--base", tiny_base_dir, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    adapter = load_adapter_file(out)
    assert adapter.training == {"imported_from": "MotionDirector", "file": "500_unet.pt", "format": "pt"}
    for name, up, down in pairs:
        assert torch.allclose(adapter.temporal.delta(name), up @ down, atol=1e-6)
    video = tmp_path / "sample.gif"
    assert main(["sample", "--base", tiny_base_dir, "--lora", f"{out}:0.5", "--prompt", "a blue circle",
                 "--steps", "2", "--frames", "4", "--out", str(video), "--quiet"]) == 0
    assert read_video(video).frames.shape == (4, 16, 16, 3)


def test_import_errors_are_one_line_and_write_nothing(tiny_base, tiny_base_dir, tmp_path, capsys):
    import torch

    from test_motiondirector_import import _WritesMarker, md_pairs, write_pt

    out = tmp_path / "out.safetensors"
    marker = tmp_path / "code_ran"
    pickled = tmp_path / "pickled.pt"
    torch.save([torch.zeros(2), _WritesMarker(marker)], pickled)
    assert main(["import", str(pickled), "--base", tiny_base_dir, "--out", str(out)]) == 2
    _one_error_line(capsys, "needs code to load", "was not run")
    assert not marker.exists()
    cut = write_pt(tmp_path / "cut.pt", md_pairs(tiny_base.unet, rank=2))
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 2)
    assert main(["import", cut, "--base", tiny_base_dir, "--out", str(out)]) == 2
    _one_error_line(capsys, "truncated")
    short = write_pt(tmp_path / "short.pt", md_pairs(tiny_base.unet, rank=2)[:-1])
    assert main(["import", short, "--base", tiny_base_dir, "--out", str(out)]) == 2
    _one_error_line(capsys, "made for another base", "49 layers", "has 50")
    assert main(["import", str(tmp_path / "absent.pt"), "--base", tiny_base_dir, "--out", str(out)]) == 2
    _one_error_line(capsys, "not found")
    assert not out.exists() and [f for f in os.listdir(tmp_path) if "partial" in f] == []


@pytest.mark.parametrize("weight", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_and_inf_weights_are_refused(tiny_base_dir, tmp_path, capsys, weight):
    from cav_core.errors import CavError

    with pytest.raises(CavError, match="finite number"):
        lora_arg(f"a.safetensors:{weight}")
    common = ["--base", tiny_base_dir, "--prompt", "x", "--out", str(tmp_path / "o.gif")]
    assert main(["sample", "--lora", f"a.safetensors:{weight}", *common]) == 2
    _one_error_line(capsys, f"a.safetensors:{weight}: the weight must be a finite number")
    assert main(["sample", "--appearance-lora", f"a.safetensors:{weight}", *common]) == 2
    _one_error_line(capsys, "finite number")
    assert os.listdir(tmp_path) == []


def test_output_names_too_long_for_the_file_system_are_refused_before_any_work(
        tiny_base, tiny_base_dir, clip_file, tmp_path, monkeypatch, capsys):
    from cav_core import training

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "train_customization", never)
    long_adapter = str(tmp_path / ("m" * 300 + ".safetensors"))
    assert _train(tiny_base_dir, clip_file, long_adapter) == 2
    _one_error_line(capsys, "too long", "312 bytes")
    assert main(["sample", "--base", tiny_base_dir, "--prompt", "x", "--out", str(tmp_path / ("v" * 300 + ".gif"))]) == 2
    _one_error_line(capsys, "too long")
    a = _adapter_file(tmp_path / "a.safetensors", tiny_base, 1)
    assert main(["merge", a, "--out", long_adapter]) == 2
    _one_error_line(capsys, "too long")
    assert main(["import", a, "--base", tiny_base_dir, "--out", long_adapter]) == 2
    _one_error_line(capsys, "too long")
    assert main(["merge", a, "--out", str(tmp_path / ("d" * 300) / "x.safetensors")]) == 2
    _one_error_line(capsys, "folder name", "300 bytes")
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "ref.gif"]
    # The longest name that still leaves room for the temporary file beside it is written.
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - len("..12345678.partial")
    fits = "n" * (longest - len(".safetensors")) + ".safetensors"
    assert main(["merge", a, "--out", str(tmp_path / fits)]) == 0 and (tmp_path / fits).exists()
    assert main(["merge", a, "--out", str(tmp_path / ("n" + fits))]) == 2
    _one_error_line(capsys, f"at most {longest} here")
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


def test_validate_every_shows_the_last_sample_beside_the_reference_in_the_preview(tiny_base_dir, clip_file,
                                                                                  clip_frames, tmp_path):
    out = tmp_path / "validated.safetensors"
    assert _train(tiny_base_dir, clip_file, out, "--validate-every", "1", "--validation-steps", "1",
                  "--validation-prompt", "a blue circle") == 0
    preview = read_video(tmp_path / "validated.webp").frames
    assert preview.shape == (6, 12 + 96, 96 + 2 + 96, 3)  # a label row, the reference, the sample
    reference = preview[:, 12:, :96].astype(int)
    assert abs(reference.mean() - clip_frames.astype(int).mean()) < 8  # the clip it was given, enlarged
    assert os.path.getsize(tmp_path / "validated.webp") < 60_000


def test_merge_preview_puts_the_sources_previews_side_by_side(tiny_base, tmp_path, clip_frames):
    from cav_core.motion_preview import training_preview, write_preview

    a = _adapter_file(tmp_path / "a.safetensors", tiny_base, 1)
    b = _adapter_file(tmp_path / "b.safetensors", tiny_base, 2)
    assert main(["merge", a, b, "--out", str(tmp_path / "none.safetensors")]) == 0
    assert not (tmp_path / "none.webp").exists()  # no source has one
    write_preview(a, training_preview(clip_frames, fps=8.0))
    assert main(["merge", a, b, "--out", str(tmp_path / "one.safetensors")]) == 0
    assert read_video(tmp_path / "one.webp").frames.shape == (6, 96, 96, 3)
    write_preview(b, training_preview(clip_frames[::-1], fps=8.0))
    assert main(["merge", a, b, "--out", str(tmp_path / "one.safetensors")]) == 0  # replaced, preview too
    both = read_video(tmp_path / "one.webp").frames
    assert both.shape == (6, 96, 96 + 2 + 96, 3)
    assert np.abs(both[0, :, :96].astype(int) - both[-1, :, 98:].astype(int)).mean() < 8  # b runs backwards
