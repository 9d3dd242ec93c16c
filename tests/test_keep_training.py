"""Keep training a saved T-LoRA: it starts from the saved weights, only a LoRA of the same shape is
taken, the record adds the steps up, and an interrupted continuation resumes."""
import os
from dataclasses import replace

import pytest
import torch

from cav_core import (AbsorberSettings, CavError, Hooks, LoraWeights, MotionSettings, TrainingInterrupted,
                      absorber_from_file, continued_record, train_customization, train_motion)
from conftest import random_lora


def _equal(a: LoraWeights, b: LoraWeights) -> bool:
    return a.tensors.keys() == b.tensors.keys() and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_training_starts_from_the_saved_lora(tiny_base, clip_frames):
    settings = MotionSettings(prompt="a red square moving right", steps=2, lr=1e-2)
    first = train_motion(tiny_base, clip_frames, settings).lora
    assert _equal(train_motion(tiny_base, clip_frames, replace(settings, steps=0), init_lora=first).lora, first)
    more = train_motion(tiny_base, clip_frames, settings, init_lora=first).lora
    assert not _equal(more, first) and not _equal(more, train_motion(tiny_base, clip_frames, settings).lora)
    assert not any(hasattr(m, "lora_A") for m in tiny_base.unet.modules())  # the base ends clean


def test_a_lora_of_another_rank_layers_or_base_is_refused(tiny_base, clip_frames):
    settings = MotionSettings(prompt="a red square", steps=1, rank=2)
    lora = random_lora(tiny_base.unet, 0, rank=2)
    train_motion(tiny_base, clip_frames, settings, init_lora=lora)  # the same shape: taken
    with pytest.raises(CavError, match="rank 2, these settings 4"):
        train_motion(tiny_base, clip_frames, replace(settings, rank=4), init_lora=lora)
    with pytest.raises(CavError, match="alpha 2, these settings 3"):
        train_motion(tiny_base, clip_frames, replace(settings, alpha=3.0), init_lora=lora)
    with pytest.raises(CavError, match="only these settings adapt .*temp_convs"):
        train_motion(tiny_base, clip_frames, replace(settings, include_temporal_convs=True), init_lora=lora)
    with pytest.raises(CavError, match="only it adapts transformer_in"):
        train_motion(tiny_base, clip_frames, replace(settings, include_transformer_in=False), init_lora=lora)
    other_base = replace(lora, tensors={k: torch.zeros(v.shape[0], v.shape[1] + 1) if "lora_A" in k else v
                                        for k, v in lora.tensors.items()})
    with pytest.raises(CavError, match="has shapes"):
        train_motion(tiny_base, clip_frames, settings, init_lora=other_base)
    assert not any(hasattr(m, "lora_A") for m in tiny_base.unet.modules())


def test_the_record_adds_the_steps_up():
    first = continued_record({"steps": 300}, "/loras/jog.safetensors", 100)
    assert first == {"total_steps": 400, "continued_from": {"file": "jog.safetensors", "steps": 300}}
    again = continued_record({"steps": 100, **first}, "jog2.safetensors", 50)
    assert again == {"total_steps": 450, "continued_from": {"file": "jog2.safetensors", "steps": 400}}


def test_the_files_absorber_is_reused_and_an_interrupted_continuation_resumes(tiny_base, clip_frames, tmp_path):
    absorber_settings = AbsorberSettings(kind="dual", prompt="a red square", steps=2, lr=1e-2)
    motion = MotionSettings(prompt="a red square moving right", steps=2, lr=1e-2)
    saved = train_customization(tiny_base, clip_frames, absorber_settings, motion).adapter
    absorber, recorded = absorber_from_file(saved)
    assert recorded == absorber_settings and absorber.spatial is saved.spatial
    seen = []
    continued = train_customization(tiny_base, clip_frames, recorded, replace(motion, steps=3),
                                    hooks=Hooks(on_progress=lambda p: seen.append(p.stage)),
                                    init_lora=saved.temporal, absorber=absorber)
    assert seen == ["motion"] * 3  # stage 1 skipped
    assert continued.adapter.spatial is saved.spatial and continued.adapter.textual_inversion is saved.textual_inversion
    assert continued.adapter.training["absorber"] == saved.training["absorber"]

    ckpt = str(tmp_path / "continue.ckpt")
    args = (tiny_base, clip_frames, recorded, replace(motion, steps=3))
    with pytest.raises(TrainingInterrupted):
        train_customization(*args, hooks=Hooks(on_progress=lambda p: seen.append(p.step), should_stop=lambda: 2 in seen,
                                               checkpoint_path=ckpt, checkpoint_every=1),
                            init_lora=saved.temporal, absorber=absorber)
    other_start = replace(saved.temporal, tensors={k: v + 1 for k, v in saved.temporal.tensors.items()})
    with pytest.raises(CavError, match="other settings"):  # the LoRA it continues is part of the run
        train_customization(*args, hooks=Hooks(checkpoint_path=ckpt), init_lora=other_start, absorber=absorber)
    resumed = train_customization(*args, hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1),
                                  init_lora=saved.temporal, absorber=absorber)
    assert _equal(resumed.adapter.temporal, continued.adapter.temporal)
    assert resumed.losses["motion"] == continued.losses["motion"] and not os.path.exists(ckpt)
