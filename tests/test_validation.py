"""Validation samples while the T-LoRA trains: at the right steps, with the LoRA so far and no
absorber, and without changing the training by a bit."""
import numpy as np
import pytest
import torch

from cav_core import (AbsorberSettings, Appearance, CavError, Hooks, MotionSettings, SampleSettings, sample_video,
                      train_absorber, train_customization, train_motion)


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_validation_samples_at_its_steps_and_leaves_training_bit_identical(tiny_base, clip_frames):
    absorber = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="dual", prompt="a red square", steps=1,
                                                                          lr=1e-2))
    settings = MotionSettings(prompt="a red square moving right", steps=4, lr=1e-2)
    plain = train_motion(tiny_base, clip_frames, settings, absorber)
    assert plain.validation is None and np.array_equal(plain.reference, clip_frames)
    assert plain.preview(8.0).frames.shape == (6, 96, 96, 3)  # the reference alone
    before = _snapshot(tiny_base.unet)
    calls, progress = [], []
    hooks = Hooks(validate_every=2, validation_steps=2, on_progress=progress.append,
                  on_validation=lambda step, prompt, frames: calls.append((step, prompt, frames)))
    validated = train_motion(tiny_base, clip_frames, settings, absorber, hooks=hooks)
    assert [(step, prompt) for step, prompt, _ in calls] == [(2, settings.prompt), (4, settings.prompt)]
    assert all(f.shape == (6, 16, 16, 3) and f.dtype == np.float32 and 0 <= f.min() <= f.max() <= 1
               for _, _, f in calls)
    assert validated.validation is calls[-1][2]
    assert [p.validation_seconds > 0 for p in progress] == [False, True, False, True]
    # Training went on exactly as without validation, and the base is left as it was.
    assert validated.losses == plain.losses
    assert all(torch.equal(plain.lora.tensors[k], validated.lora.tensors[k]) for k in plain.lora.tensors)
    after = _snapshot(tiny_base.unet)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(hasattr(m, "lora_A") for m in tiny_base.unet.modules())
    # The last sample is the finished T-LoRA alone (the absorber left out, as at inference).
    same = SampleSettings(settings.prompt, seed=settings.seed, steps=2, frames=6, size=(16, 16))
    assert np.array_equal(sample_video(tiny_base, same, [(validated.lora, 1.0)], device="cpu"), validated.validation)
    with_absorber = sample_video(tiny_base, same, [(validated.lora, 1.0)], Appearance(absorber.spatial), device="cpu")
    assert not np.allclose(with_absorber, validated.validation, atol=1e-3)


def test_validation_prompts_and_the_result_of_both_stages(tiny_base, clip_frames):
    prompts = ("a blue circle", "a green triangle")
    calls = []
    hooks = Hooks(validate_every=3, validation_prompts=prompts, validation_steps=1,
                  on_validation=lambda step, prompt, frames: calls.append((step, prompt)))
    result = train_customization(tiny_base, clip_frames, AbsorberSettings(kind="none"),
                                 MotionSettings(prompt="a red square moving right", steps=3), hooks=hooks)
    assert calls == [(3, prompts[0]), (3, prompts[1])]
    assert result.validation.shape == (6, 16, 16, 3)
    # what the file's preview shows: the reference as trained beside the last sample, labelled by its prompt
    assert result.validation_prompt == prompts[1] and np.array_equal(result.reference, clip_frames)
    assert result.preview(8.0).frames.shape == (6, 12 + 96, 96 + 2 + 96, 3)
    assert train_customization(tiny_base, clip_frames, AbsorberSettings(kind="none"),
                               MotionSettings(prompt="x", steps=1)).validation is None
    with pytest.raises(CavError, match="steps must be >= 1"):
        train_motion(tiny_base, clip_frames, MotionSettings(prompt="x", steps=1),
                     hooks=Hooks(validate_every=1, validation_steps=0))


def test_without_prompts_validation_draws_the_new_appearances_of_the_bases_recipe(tiny_base, clip_frames):
    from dataclasses import replace

    calls = []
    hooks = Hooks(validate_every=1, validation_steps=1, on_validation=lambda step, prompt, frames: calls.append(prompt))
    tiny_base.recipe = replace(tiny_base.recipe, validation_prompts=("a green circle moving",))
    train_motion(tiny_base, clip_frames, MotionSettings(prompt="a red square moving right", steps=1), hooks=hooks)
    assert calls == ["a green circle moving"]
