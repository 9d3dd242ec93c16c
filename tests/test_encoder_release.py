"""A base its process owns alone: training releases the VAE and text encoder once latents and text
states are cached, reads them back where a validation sample needs them, and learns exactly what
a base that keeps them learns."""
import numpy as np
import torch

from cav_core import AbsorberSettings, Hooks, MotionSettings, load_base, train_customization


def _train(base, clip_frames, seen: list):
    def on_validation(step, prompt, frames):
        seen.append((step, base._vae is not None, base._text_encoder is not None))

    hooks = Hooks(validate_every=2, validation_steps=2, on_validation=on_validation)
    return train_customization(base, clip_frames, AbsorberSettings(kind="dual", prompt="a red square", steps=1,
                                                                   lr=1e-2),
                               MotionSettings(prompt="a red square moving right", steps=4, lr=1e-2), hooks=hooks)


def test_training_releases_the_encoders_of_a_base_it_owns_and_learns_the_same(tiny_base_dir, clip_frames):
    shared, owned = load_base(tiny_base_dir), load_base(tiny_base_dir, encoders_reloadable=True)
    seen_shared, seen_owned = [], []
    kept = _train(shared, clip_frames, seen_shared)
    released = _train(owned, clip_frames, seen_owned)
    # The base a host shares keeps its modules; the owned one reads them back for each validation
    # sample and drops them again before the next training step.
    assert shared._vae is not None and shared._text_encoder is not None
    assert owned._vae is None and owned._text_encoder is None
    assert seen_owned == [(2, True, True), (4, True, True)] and seen_shared == seen_owned
    assert released.losses == kept.losses
    assert all(torch.equal(kept.adapter.temporal.tensors[k], released.adapter.temporal.tensors[k])
               for k in kept.adapter.temporal.tensors)
    assert np.array_equal(kept.validation, released.validation)
    # Read back on use, as the folder has them.
    assert owned.text_encoder.config.hidden_size == shared.text_encoder.config.hidden_size
    assert owned.fingerprint == shared.fingerprint and owned.vae_scale_factor == shared.vae_scale_factor


def test_the_motion_stage_releases_the_text_encoder_before_the_vae_runs(tiny_base_dir, clip_frames, monkeypatch):
    """Their weights are read from the base's files as they run: one at a time lowers the setup's peak."""
    from cav_core import motion_training, train_motion

    owned = load_base(tiny_base_dir, encoders_reloadable=True)
    seen = []
    original = motion_training.encode_clip

    def encode_clip(vae, frames):
        seen.append(owned._text_encoder is None)
        return original(vae, frames)

    monkeypatch.setattr(motion_training, "encode_clip", encode_clip)
    train_motion(owned, clip_frames, MotionSettings(prompt="a red square moving right", steps=1))
    assert seen == [True]
    assert owned._vae is None and owned._text_encoder is None
