"""Several clips of one motion: one training size and length, one clip drawn per step, both stages."""
import os

import numpy as np
import pytest
import torch

from cav_core import AbsorberSettings, CavError, Hooks, MotionSettings, TrainingInterrupted, train_customization
from cav_core import train_motion
from cav_core.frames import training_clips
from cav_core.text import encode_prompts
from cav_core.video_io import resize_center_crop


@pytest.fixture(scope="module")
def other_clip() -> np.ndarray:
    """8 frames of a blue square moving down, 32 wide and 24 high: another size and length."""
    frames = np.full((8, 24, 32, 3), 240, np.uint8)
    for i in range(8):
        frames[i, 1 + 2 * i:7 + 2 * i, 12:18] = (30, 30, 220)
    return frames


def test_clips_are_brought_to_the_first_ones_size_and_length(tiny_base, clip_frames, other_clip):
    clips = training_clips(tiny_base, [(clip_frames, "red"), (other_clip, "")], prompt="fallback")
    assert [c.frames.shape for c in clips] == [(6, 16, 16, 3)] * 2
    assert clips[0].frames is clip_frames  # the first clip is the training size: untouched
    assert [c.caption for c in clips] == ["red", "fallback"]
    assert [c.record for c in clips] == [{"caption": "red", "frames": 6, "size": [16, 16]},
                                         {"caption": "fallback", "frames": 8, "size": [32, 24]}]
    evenly = other_clip[[0, 1, 3, 4, 6, 7]]  # 8 frames to 6, first and last kept
    assert np.array_equal(clips[1].frames, resize_center_crop(evenly, 16, 16))
    with pytest.raises(CavError, match="reference clip 2 has 1 frame"):
        training_clips(tiny_base, [(clip_frames, "a"), (other_clip[:1], "b")])
    with pytest.raises(CavError, match="reference clip 2"):
        training_clips(tiny_base, [(clip_frames, "a"), (other_clip.astype(np.float32), "b")])
    with pytest.raises(CavError, match="no reference clip"):
        training_clips(tiny_base, [])
    with pytest.raises(CavError, match="clip 2 has no caption"):
        train_motion(tiny_base, [(clip_frames, "a"), (other_clip, "")], MotionSettings(prompt="", steps=1))


def test_each_step_draws_one_clip_with_its_caption(tiny_base, clip_frames, other_clip, monkeypatch):
    captions = ["a red square moving right", "a blue square moving down"]
    with torch.no_grad():
        expected = encode_prompts(tiny_base, captions)
    seen = []
    original = tiny_base.unet.forward

    def recording(sample, t, text, *args, **kwargs):
        seen.append(next(i for i, e in enumerate(expected) if torch.equal(text[0], e)))
        return original(sample, t, text, *args, **kwargs)

    monkeypatch.setattr(tiny_base.unet, "forward", recording)
    lora, losses = train_motion(tiny_base, list(zip((clip_frames, other_clip), captions)),
                                MotionSettings(prompt="ignored: each clip has its caption", steps=3, lr=1e-2))
    assert seen == [1, 1, 0]  # seed 0's draws: both clips, each with its own caption
    assert len(losses) == 3 and all(np.isfinite(losses))
    # One clip given as a list is the single-clip run.
    monkeypatch.setattr(tiny_base.unet, "forward", original)
    settings = MotionSettings(prompt=captions[0], steps=2, lr=1e-2)
    single = train_motion(tiny_base, clip_frames, settings)
    listed = train_motion(tiny_base, [(clip_frames, captions[0])], settings)
    assert all(torch.equal(single.lora.tensors[k], listed.lora.tensors[k]) for k in single.lora.tensors)


def test_the_record_lists_every_clip_and_the_absorber_crops_all(tiny_base, clip_frames, other_clip, monkeypatch):
    from cav_core import absorber_training

    crops_from = []
    original = absorber_training.random_crops

    def recording(frames, *args):
        crops_from.append(frames)
        return original(frames, *args)

    monkeypatch.setattr(absorber_training, "random_crops", recording)
    result = train_customization(tiny_base, [(clip_frames, "a red square moving right"), (other_clip, "a blue one")],
                                 AbsorberSettings(kind="slora", prompt="a square", steps=1),
                                 MotionSettings(prompt="", steps=1))
    assert crops_from[0].shape == (12, 16, 16, 3)  # the pool is drawn across both clips' frames
    record = result.adapter.training
    assert record["prompt"] == "a red square moving right" and record["frames"] == 6 and record["size"] == [16, 16]
    assert record["clips"] == [{"caption": "a red square moving right", "frames": 6, "size": [16, 16]},
                               {"caption": "a blue one", "frames": 8, "size": [32, 24]}]


def test_multi_clip_resume_equals_uninterrupted(tiny_base, clip_frames, other_clip, tmp_path):
    clips = [(clip_frames, "a red square moving right"), (other_clip, "a blue square moving down")]
    settings = (AbsorberSettings(kind="slora", prompt="a square", steps=2, lr=1e-2),
                MotionSettings(prompt="", steps=3, lr=1e-2))
    full = train_customization(tiny_base, clips, *settings)
    ckpt = str(tmp_path / "run.ckpt.safetensors")
    seen = []
    hooks = Hooks(on_progress=lambda p: seen.append((p.stage, p.step)), should_stop=lambda: ("motion", 2) in seen,
                  checkpoint_path=ckpt, checkpoint_every=1)
    with pytest.raises(TrainingInterrupted):
        train_customization(tiny_base, clips, *settings, hooks=hooks)
    with pytest.raises(CavError, match="other settings"):  # other captions: another run
        train_customization(tiny_base, [(f, c + "!") for f, c in clips], *settings,
                            hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1))
    resumed = train_customization(tiny_base, clips, *settings, hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1))
    for part in ("temporal", "spatial"):
        a, b = getattr(full.adapter, part).tensors, getattr(resumed.adapter, part).tensors
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert resumed.losses == full.losses
    assert not os.path.exists(ckpt)
