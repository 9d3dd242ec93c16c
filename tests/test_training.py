import os
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from cav_core.errors import CavError, NonFiniteLoss, OutOfDeviceMemory, TrainingInterrupted
from cav_core import (AbsorberSettings, ComputeSettings, Hooks, MotionSettings, train_absorber,
                      train_customization, train_motion, training_record)


def _snapshot(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def _same(a, b):
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_absorber_dual_learns_only_its_params(tiny_base, clip_frames):
    before = _snapshot(tiny_base.unet, tiny_base.vae, tiny_base.text_encoder)
    vocab = len(tiny_base.tokenizer)
    table_before = tiny_base.text_encoder.get_input_embeddings().weight.detach().clone()
    absorber = train_absorber(tiny_base, clip_frames,
                              AbsorberSettings(kind="dual", prompt="a red square", steps=3, lr=1e-2, ti_lr=0.1))
    assert absorber.spatial is not None and absorber.textual_inversion is not None
    assert absorber.textual_inversion.tokens == ("<cav-ref>",)
    assert any(v.abs().sum() > 0 for k, v in absorber.spatial.tensors.items() if "lora_B" in k)
    assert len(absorber.losses) == 3
    # The base is unchanged except for the embedding table gaining the placeholder row.
    after = _snapshot(tiny_base.unet, tiny_base.vae)
    assert _same(before[:2], after)
    table = tiny_base.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[:vocab], table_before[:vocab])
    assert not any(type(m).__name__.startswith("Linear") and hasattr(m, "lora_A")
                   for m in tiny_base.unet.modules())


def test_absorber_kinds(tiny_base, clip_frames):
    none = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="none"))
    assert none.spatial is None and none.textual_inversion is None
    ti = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="ti", steps=2))
    assert ti.spatial is None and ti.textual_inversion.vectors.shape == (1, 16)
    slora = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="slora", steps=2))
    assert slora.textual_inversion is None and all(".attentions." in t for t in slora.spatial.targets)
    with pytest.raises(CavError, match="absorber kind"):
        AbsorberSettings(kind="lora").validate()
    with pytest.raises(CavError, match="crop range"):
        AbsorberSettings(crop_range=(0.8, 0.3)).validate()


def test_motion_stage_trains_only_the_tlora(tiny_base, clip_frames):
    absorber = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="dual", steps=2, lr=1e-2))
    before = _snapshot(tiny_base.unet, tiny_base.vae, tiny_base.text_encoder)
    spatial_before = {k: v.clone() for k, v in absorber.spatial.tensors.items()}
    lora, losses = train_motion(tiny_base, clip_frames,
                                MotionSettings(prompt="a red square moving right", steps=3, lr=1e-2),
                                absorber)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert all(".temp_attentions." in t or t.startswith("transformer_in.") for t in lora.targets)
    assert any(v.abs().sum() > 0 for k, v in lora.tensors.items() if "lora_B" in k)  # it learned
    assert _same(before, _snapshot(tiny_base.unet, tiny_base.vae, tiny_base.text_encoder))
    assert all(torch.equal(absorber.spatial.tensors[k], v) for k, v in spatial_before.items())


def test_motion_stage_without_the_token_is_the_run_that_sees_only_the_slora(tiny_base, clip_frames):
    from cav_core import Absorber

    absorber = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="dual", steps=2, lr=1e-2, ti_lr=0.1))
    settings = MotionSettings(prompt="a red square moving right", steps=2, lr=1e-2)
    with_token = train_motion(tiny_base, clip_frames, settings, absorber)[1]
    without = train_motion(tiny_base, clip_frames, replace(settings, absorber_token_in_prompt=False), absorber)[1]
    slora_only = train_motion(tiny_base, clip_frames, settings, Absorber(absorber.spatial, None))[1]
    assert without == slora_only
    assert without != with_token


def test_motion_stage_can_also_adapt_the_temporal_convolutions(tiny_base, clip_frames):
    before = _snapshot(tiny_base.unet, tiny_base.vae, tiny_base.text_encoder)
    lora, _ = train_motion(tiny_base, clip_frames, MotionSettings(prompt="a red square moving right", steps=2,
                                                                  lr=1e-2, include_temporal_convs=True))
    convs = [t for t in lora.targets if ".temp_convs." in t]
    assert convs and len(convs) < len(lora.targets)  # attention as well
    assert all(lora.tensors[f"{t}.lora_B.weight"].abs().sum() > 0 for t in convs)  # they learned
    assert _same(before, _snapshot(tiny_base.unet, tiny_base.vae, tiny_base.text_encoder))


def test_debiased_loss_option_runs_and_differs(tiny_base, clip_frames):
    plain = train_motion(tiny_base, clip_frames, MotionSettings(prompt="a square", steps=1))[1]
    debiased = train_motion(tiny_base, clip_frames, MotionSettings(prompt="a square", steps=1, loss="debiased"))[1]
    assert debiased[0] > plain[0]  # same noise, plus a non-negative second term


def _timesteps_trained(unet, run) -> list[int]:
    """The timesteps of every UNet forward while ``run()`` trains."""
    seen = []
    handle = unet.register_forward_pre_hook(lambda _, args: seen.extend(int(t) for t in args[1].reshape(-1)))
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_min_timestep_keeps_training_on_the_noisier_timesteps(tiny_base, clip_frames):
    def trained(min_timestep):
        settings = MotionSettings(prompt="a red square", steps=12, seed=1, min_timestep=min_timestep)
        return _timesteps_trained(tiny_base.unet, lambda: train_motion(tiny_base, clip_frames, settings))

    everywhere, noisy = trained(0), trained(800)
    assert len(everywhere) == len(noisy) == 12
    assert min(everywhere) < 800 and min(noisy) >= 800 and max(noisy) < 1000
    with pytest.raises(CavError, match="leaves no timestep"):
        train_motion(tiny_base, clip_frames, MotionSettings(prompt="x", steps=1, min_timestep=1000))
    for bad in (-1, True, 2.5):
        with pytest.raises(CavError, match="min_timestep"):
            MotionSettings(prompt="x", min_timestep=bad).validate()


def test_min_timestep_out_of_the_schedule_fails_before_the_absorber_trains(tiny_base, clip_frames):
    absorber, motion = _settings()

    def run():
        with pytest.raises(CavError, match="leaves no timestep"):
            train_customization(tiny_base, clip_frames, absorber, replace(motion, min_timestep=5000))
    assert _timesteps_trained(tiny_base.unet, run) == []  # not one absorber step was spent


def _settings(steps=4):
    return (AbsorberSettings(kind="dual", prompt="a red square", steps=3, lr=1e-2),
            MotionSettings(prompt="a red square moving right", steps=steps, lr=1e-2))


@pytest.mark.parametrize("stop_stage,stop_step", [("absorber", 2), ("motion", 3)])
def test_resume_equals_uninterrupted(tiny_base, clip_frames, tmp_path, stop_stage, stop_step):
    full = train_customization(tiny_base, clip_frames, *_settings()).adapter
    ckpt = str(tmp_path / "run.ckpt.safetensors")
    seen = []

    def stop():
        return bool(seen) and seen[-1] == (stop_stage, stop_step)

    hooks = Hooks(on_progress=lambda p: seen.append((p.stage, p.step)), should_stop=stop,
                  checkpoint_path=ckpt, checkpoint_every=1)
    with pytest.raises(TrainingInterrupted, match="resume from"):
        train_customization(tiny_base, clip_frames, *_settings(), hooks=hooks)
    assert os.path.exists(ckpt)
    resumed = train_customization(tiny_base, clip_frames, *_settings(),
                                  hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1)).adapter
    for part in ("temporal", "spatial"):
        a, b = getattr(full, part).tensors, getattr(resumed, part).tensors
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert torch.equal(full.textual_inversion.vectors, resumed.textual_inversion.vectors)
    assert not os.path.exists(ckpt)  # a finished run removes its checkpoint


def test_each_stage_alone_resumes_from_its_checkpoint_folder(tiny_base, clip_frames, tmp_path):
    """What the nodes do: train a stage again after an interrupt and it goes on where it stopped;
    a run with other settings gets a checkpoint of its own; a finished run leaves none behind."""
    absorber_settings, motion_settings = _settings(4)
    folder = str(tmp_path / "checkpoints")
    absorber = train_absorber(tiny_base, clip_frames, absorber_settings)
    full = train_motion(tiny_base, clip_frames, motion_settings, absorber).lora
    with pytest.raises(TrainingInterrupted):
        train_motion(tiny_base, clip_frames, motion_settings, absorber,
                     hooks=Hooks(should_stop=_after(2), checkpoint_folder=folder, checkpoint_every=1))
    with pytest.raises(TrainingInterrupted):  # another run beside it: its own file
        train_motion(tiny_base, clip_frames, replace(motion_settings, seed=5), absorber,
                     hooks=Hooks(should_stop=_after(1), checkpoint_folder=folder, checkpoint_every=1))
    assert len(os.listdir(folder)) == 2
    seen = []
    resumed = train_motion(tiny_base, clip_frames, motion_settings, absorber,
                           hooks=Hooks(on_progress=lambda p: seen.append(p.step), checkpoint_folder=folder,
                                       checkpoint_every=1)).lora
    assert seen == [3, 4]  # steps 1 and 2 came from the checkpoint
    assert all(torch.equal(full.tensors[k], resumed.tensors[k]) for k in full.tensors)
    assert len(os.listdir(folder)) == 1  # its own checkpoint removed, the other run's kept
    with pytest.raises(TrainingInterrupted):
        train_absorber(tiny_base, clip_frames, absorber_settings,
                       hooks=Hooks(should_stop=_after(2), checkpoint_folder=folder, checkpoint_every=1))
    again = train_absorber(tiny_base, clip_frames, absorber_settings,
                           hooks=Hooks(checkpoint_folder=folder, checkpoint_every=1))
    assert all(torch.equal(absorber.spatial.tensors[k], again.spatial.tensors[k]) for k in absorber.spatial.tensors)
    assert len(os.listdir(folder)) == 1


def test_checkpoint_from_other_settings_is_refused(tiny_base, clip_frames, tmp_path):
    ckpt = str(tmp_path / "run.ckpt.safetensors")
    hooks = Hooks(should_stop=lambda: True, checkpoint_path=ckpt, checkpoint_every=1)
    absorber, motion = _settings()
    with pytest.raises(TrainingInterrupted):
        train_customization(tiny_base, clip_frames, absorber, motion,
                            hooks=Hooks(on_progress=None, should_stop=_after(2), checkpoint_path=ckpt,
                                        checkpoint_every=1))
    with pytest.raises(CavError, match="other settings"):
        train_customization(tiny_base, clip_frames, absorber, MotionSettings(prompt="other", steps=4), hooks=hooks)


def _after(n):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > n
    return stop


def test_nan_loss_stops_with_clear_error(tiny_base, clip_frames, monkeypatch):
    original = tiny_base.unet.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        out.sample.fill_(float("nan"))
        return out

    monkeypatch.setattr(tiny_base.unet, "forward", poisoned)
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 1"):
        train_motion(tiny_base, clip_frames, MotionSettings(prompt="x", steps=2))


def _out_of_memory_at_call(unet, patch, n: int) -> None:
    """The UNet's ``n``-th real forward runs out of device memory (the memory plan's fake forward
    runs the class's own forward, past this)."""
    original, calls = unet.forward, []

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    patch.setattr(unet, "forward", forward)


def test_a_step_out_of_device_memory_says_what_to_change_and_writes_nothing(tiny_base, clip_frames, tmp_path,
                                                                            monkeypatch):
    settings = MotionSettings(prompt="x", steps=3)
    with monkeypatch.context() as patch:
        _out_of_memory_at_call(tiny_base.unet, patch, 2)
        with pytest.raises(OutOfDeviceMemory, match=r"motion training ran out of memory on cpu at step 2/3 \(a "
                           r"step was estimated at .* GiB with 0 UNet blocks recomputed, for a 6.0 GiB target\)"
                           ) as caught:
            train_motion(tiny_base, clip_frames, settings)
    assert "memory target" in str(caught.value) and "gradient checkpointing" in str(caught.value)
    assert caught.value.__context__ is None  # the failed step's tensors are not held by the error
    assert not any(hasattr(m, "lora_A") for m in tiny_base.unet.modules())  # the base is left clean

    # with every block recomputed already, only the clip's size is left to change; a checkpoint to resume from
    ckpt = str(tmp_path / "run.ckpt.safetensors")
    with monkeypatch.context() as patch:
        _out_of_memory_at_call(tiny_base.unet, patch, 2)
        with pytest.raises(OutOfDeviceMemory, match="resume from") as caught:
            train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="dual", prompt="x", steps=3),
                           compute=ComputeSettings(gradient_checkpointing=True),
                           hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1))
    message = str(caught.value)
    assert message.startswith("absorber training ran out of memory on cpu at step 2/3; ")
    assert "fewer frames" in message and "checkpointing" not in message and "memory target" not in message
    resumed = train_absorber(tiny_base, clip_frames, AbsorberSettings(kind="dual", prompt="x", steps=3),
                             compute=ComputeSettings(gradient_checkpointing=True),
                             hooks=Hooks(checkpoint_path=ckpt, checkpoint_every=1))
    assert len(resumed.losses) == 3 and not os.path.exists(ckpt)


def test_bad_frames_and_settings(tiny_base, clip_frames):
    with pytest.raises(CavError, match="at least 2"):
        train_motion(tiny_base, clip_frames[:1], MotionSettings(prompt="x", steps=1))
    with pytest.raises(CavError, match="uint8 RGB"):
        train_motion(tiny_base, clip_frames.astype(np.float32), MotionSettings(prompt="x", steps=1))
    with pytest.raises(CavError, match="prompt is empty"):
        MotionSettings(prompt=" ").validate()
    with pytest.raises(CavError, match="learning rate"):
        MotionSettings(prompt="x", lr=0).validate()


def test_gradient_checkpointing_gives_the_same_training(tiny_base, clip_frames):

    settings = MotionSettings(prompt="a red square", steps=2, lr=1e-2)
    plain, plain_losses = train_motion(tiny_base, clip_frames, settings)
    ckpt, ckpt_losses = train_motion(tiny_base, clip_frames, settings,
                                     compute=ComputeSettings(gradient_checkpointing=True))
    assert np.allclose(plain_losses, ckpt_losses, atol=1e-6)
    assert all(torch.allclose(plain.tensors[k], ckpt.tensors[k], atol=1e-6) for k in plain.tensors)
    assert not any("forward" in m.__dict__ for m in tiny_base.unet.modules())  # unwrapped again


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(tiny_base, clip_frames, precision):
    """Autocast (and fp16 loss scaling) run on the CPU too, so the option is exercised here."""

    settings = MotionSettings(prompt="a red square", steps=2, lr=1e-3)
    _, full = train_motion(tiny_base, clip_frames, settings)
    lora, mixed = train_motion(tiny_base, clip_frames, settings,
                               compute=ComputeSettings(mixed_precision=precision))
    assert np.all(np.isfinite(mixed)) and np.allclose(mixed, full, rtol=0.1, atol=0.02)
    assert mixed != full  # it really ran in lower precision
    assert all(v.dtype == torch.float32 for v in lora.tensors.values())


def test_training_record_carries_every_setting():
    # Non-default values everywhere, so a field recorded from the wrong place or left out shows.
    motion = MotionSettings(prompt="a dot zigzags", steps=7, lr=1e-3, rank=2, alpha=3.0, seed=5,
                            include_transformer_in=False, include_feed_forward=True,
                            include_temporal_convs=True, loss="debiased", absorber_token_in_prompt=False,
                            min_timestep=300)
    absorber = AbsorberSettings(kind="ti", prompt="a dot", steps=3, lr=2e-4, ti_lr=1e-2, rank=8,
                                crop_range=(0.4, 0.9), batch=2, crop_pool=9, seed=3, placeholder="<dot>",
                                init_word="shape")
    frames = np.zeros((6, 40, 56, 3), dtype=np.uint8)
    record = training_record(motion, frames, absorber, ("<cav-ref>",), ComputeSettings(mixed_precision="bf16"))
    for f in fields(MotionSettings):
        if f.name != "alpha":
            assert record[f.name] == getattr(motion, f.name), f.name
    assert record["frames"] == 6 and record["size"] == [56, 40] and record["mixed_precision"] == "bf16"
    for f in fields(AbsorberSettings):  # every absorber field too, so a new one cannot be left out
        expected = getattr(absorber, f.name)
        assert record["absorber"][f.name] == (list(expected) if isinstance(expected, tuple) else expected), f.name
    assert record["absorber"]["tokens"] == ["<cav-ref>"]
    assert "absorber" not in training_record(motion, frames, None)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_weights_train_with_fp32_adapters(tiny_base_dir, clip_frames, precision):
    """What the nodes do on a GPU: weights loaded in bf16/fp16, autocast in the same dtype (fp16
    with loss scaling). The adapter stays fp32 (loss scaling refuses fp16 parameters) and learns."""
    from cav_core.base_model import load_base

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    half = load_base(tiny_base_dir, dtype=dtype)
    compute = ComputeSettings(mixed_precision=precision)
    settings = MotionSettings(prompt="a red square", steps=2, lr=1e-2)
    lora, losses = train_motion(half, clip_frames, settings, compute=compute)
    assert np.all(np.isfinite(losses))
    assert any(v.abs().sum() > 0 for k, v in lora.tensors.items() if "lora_B" in k)  # B left zero: nothing learned
    absorber = train_absorber(half, clip_frames, AbsorberSettings(kind="dual", prompt="a red square", steps=2),
                              compute=compute)
    assert np.all(np.isfinite(absorber.losses))
    assert all(p.dtype == dtype for p in half.unet.parameters())  # the base itself is untouched
