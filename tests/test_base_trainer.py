"""The shapes-world base trainer: object-weighted VAE loss, resume, and phase-2 initialisation."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cav_core import read_checkpoint
from cav_core.shapes_world.scenes import Scene, render
from tools.shapes_world import base_data, train_base
from tools.shapes_world.base_losses import denoising_loss, keep_temporal_convs_causal, training_timesteps


def test_object_weights_pick_out_the_object_on_any_background():
    for background in ("white", "black", "gray"):
        clip = render(Scene("green", "square", background, "static", size=0.25))
        frames = base_data.clips_to_frames(clip[None, :2])
        weights = base_data.object_weights(frames, 20.0)
        on_object = weights[:, 0] > 1
        assert weights.shape == (2, 1, 64, 64) and set(weights.unique().tolist()) == {1.0, 21.0}
        assert 0.04 < on_object.float().mean() < 0.1  # a 16 px square in a 64 px frame: 6 %
        assert torch.equal(base_data.object_weights(frames, 0.0), torch.ones_like(weights))


TINY_RUN = ["--vae-steps", "2", "--vae-batch", "4", "--scaling-clips", "1", "--batch", "1", "--decoder-steps", "1",
            "--checkpoint-every", "1", "--threads", "1", "--object-weight", "20", "--zero-snr"]


def _checkpoint(work):
    tensors, meta = read_checkpoint(str(work / "checkpoint.safetensors"))
    return meta["phase"], int(meta["step"]), tensors


def test_an_interrupted_run_resumes_into_the_same_model(tmp_path, monkeypatch):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_base.main(["--work", str(whole), "--out", str(tmp_path / "out_whole"), "--steps", "2", *TINY_RUN])
    clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def interrupted_on_the_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", interrupted_on_the_second_step)
    with pytest.raises(KeyboardInterrupt):
        train_base.main(["--work", str(parts), "--out", str(tmp_path / "out_parts"), "--steps", "2", *TINY_RUN])
    monkeypatch.undo()
    assert _checkpoint(parts)[:2] == ("unet", 1)
    train_base.main(["--work", str(parts), "--out", str(tmp_path / "out_parts"), "--steps", "2", *TINY_RUN])
    a, b = _checkpoint(whole)[2], _checkpoint(parts)[2]
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert differ == [], (len(differ), differ[:5], max((a[k] - b[k]).abs().max().item() for k in differ))
    assert (tmp_path / "out_whole" / "unet" / "config.json").exists()


def test_phase_two_can_start_from_another_runs_unet(tmp_path):
    first = tmp_path / "first"
    train_base.main(["--work", str(first), "--out", str(tmp_path / "o1"), "--steps", "1", *TINY_RUN])
    donor = _checkpoint(first)[2]
    second = tmp_path / "second"
    train_base.main(["--work", str(second), "--out", str(tmp_path / "o2"), "--steps", "0", "--seed", "1",
                     "--init-unet", str(first / "checkpoint.safetensors"), *TINY_RUN])
    got = _checkpoint(second)[2]
    assert all(torch.equal(got[k], donor[k]) for k in donor if k.startswith(("unet.", "text_encoder.")))
    assert not all(torch.equal(got[k], donor[k]) for k in donor if k.startswith("vae."))  # its own VAE (seed 1)
    assert np.isfinite([v.float().sum().item() for v in got.values()]).all()


def test_latent_object_weights_sit_where_the_object_is():
    scenes = [Scene("green", "square", "white", "right", size=0.25), Scene("red", "circle", "black", "up", size=0.25)]
    frames = base_data.clips_to_frames(np.stack([render(s) for s in scenes]))
    weights = base_data.latent_object_weights(frames, 20.0, torch.Size([2, 4, 16, 16, 16]))
    assert weights.shape == (2, 1, 16, 16, 16) and weights.min() == 1 and weights.max() == 21
    for clip in range(2):
        for frame in (0, 15):
            pixels = base_data.object_weights(frames[clip * 16 + frame:clip * 16 + frame + 1], 20.0)[0, 0] > 1
            latent = weights[clip, 0, frame] > 1
            pixel_centre = pixels.nonzero().float().mean(0)
            latent_centre = latent.nonzero().float().mean(0) * 4 + 1.5  # latent cell -> pixel centre
            assert torch.allclose(pixel_centre, latent_centre, atol=2.5)


def test_phase_two_can_start_from_an_exported_model_folder(tmp_path):
    train_base.main(["--work", str(tmp_path / "first"), "--out", str(tmp_path / "model"), "--steps", "1", *TINY_RUN])
    exported = {name: load_file(str(tmp_path / "model" / name / "diffusion_pytorch_model.safetensors"))
                for name in ("unet", "vae")}
    exported["text_encoder"] = load_file(str(tmp_path / "model" / "text_encoder" / "model.safetensors"))
    second = tmp_path / "second"
    train_base.main(["--work", str(second), "--out", str(tmp_path / "o2"), "--steps", "1", "--seed", "1",
                     *TINY_RUN, "--init-model", str(tmp_path / "model")])
    phase, step, got = _checkpoint(second)
    assert (phase, step) == ("unet", 1)
    vae = {k: v for k, v in got.items() if k.startswith("vae.")}
    assert all(torch.equal(vae["vae." + k], v) for k, v in exported["vae"].items())  # frozen in phase 2
    assert any(not torch.equal(got["unet." + k], v) for k, v in exported["unet"].items())
    for name in ("unet", "text_encoder"):  # one small step away from the export, not a fresh init
        assert max((got[f"{name}.{k}"] - v).abs().max().item() for k, v in exported[name].items()) < 0.01
    scaling = float(read_checkpoint(str(second / "checkpoint.safetensors"))[1]["scaling"])
    assert scaling == json.loads((tmp_path / "model" / "vae" / "config.json").read_text())["scaling_factor"]
    record = json.loads((tmp_path / "o2" / "training_log.json").read_text())  # how it was made, both runs
    assert record["settings"]["init_model"] == "model" and record["settings"]["seed"] == 1
    assert not {"work", "out"} & set(record["settings"])  # the making machine's folders are not kept
    assert record["init_model_log"]["settings"]["seed"] == 0 and record["init_model_log"]["unet_steps"] == 1
    (tmp_path / "model" / "training_log.json").unlink()  # a folder made elsewhere: still starts and exports
    train_base.main(["--work", str(tmp_path / "third"), "--out", str(tmp_path / "o3"), "--steps", "1",
                     *TINY_RUN, "--init-model", str(tmp_path / "model")])
    assert "init_model_log" not in json.loads((tmp_path / "o3" / "training_log.json").read_text())


def test_motion_weight_adds_only_the_error_that_changes_across_frames():
    target = torch.zeros(2, 4, 16, 8, 8)
    steady = torch.ones_like(target)  # wrong by the same amount in every frame
    assert torch.equal(denoising_loss(steady, target, None, 5.0), denoising_loss(steady, target, None, 0.0))
    moving = torch.zeros_like(target)
    moving[:, :, 8:] = 2.0  # half the frames wrong by 2: mean error 1, varying part +-1
    plain = denoising_loss(moving, target, None, 0.0)
    assert plain == 2.0 and denoising_loss(moving, target, None, 5.0) == 2.0 + 5.0 * 1.0
    weights = torch.full((2, 1, 16, 8, 8), 3.0)
    assert denoising_loss(moving, target, weights, 5.0) == 3 * (2.0 + 5.0)


def test_high_noise_share_moves_timesteps_into_the_noisiest_thirty_percent():
    gen = torch.Generator().manual_seed(0)
    uniform = training_timesteps(1000, 4000, 0.0, gen)
    all_high = training_timesteps(1000, 4000, 1.0, gen)
    half = training_timesteps(1000, 4000, 0.5, gen)
    assert 0.25 < (uniform >= 700).float().mean() < 0.35
    assert all_high.min() >= 700 and all_high.max() < 1000
    assert 0.6 < (half >= 700).float().mean() < 0.7  # 0.5 + 0.5 * 0.3


def test_text_lr_scale_sets_the_text_encoders_learning_rate_apart(tmp_path):
    train_base.main(["--work", str(tmp_path / "first"), "--out", str(tmp_path / "model"), "--steps", "0", *TINY_RUN])
    before = _checkpoint(tmp_path / "first")[2]
    train_base.main(["--work", str(tmp_path / "frozen_text"), "--out", str(tmp_path / "o2"), "--steps", "1",
                     *TINY_RUN, "--init-model", str(tmp_path / "model"), "--text-lr-scale", "0"])
    after = _checkpoint(tmp_path / "frozen_text")[2]
    text = [k for k in before if k.startswith("text_encoder.")]
    assert all(torch.equal(before[k], after[k]) for k in text)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("unet."))


def test_text_lr_scale_zero_freezes_the_text_encoder_also_when_resuming(tmp_path):
    """Scale 0 means no gradient at all (AdamW keeps no state for it), and a resumed run takes the
    command's scale, not the checkpoint's."""
    work = tmp_path / "run"
    train_base.main(["--work", str(work), "--out", str(tmp_path / "m0"), "--steps", "0", *TINY_RUN])
    before = _checkpoint(work)[2]
    train_base.main(["--work", str(work), "--out", str(tmp_path / "m1"), "--steps", "2", *TINY_RUN,
                     "--text-lr-scale", "0"])
    after = _checkpoint(work)[2]
    text = [k for k in before if k.startswith("text_encoder.")]
    assert all(torch.equal(before[k], after[k]) for k in text)
    from cav_core.shapes_world import architecture as arch

    n_unet = len(list(arch.build_unet().parameters()))
    adam_state = {int(k.split(".")[1]) for k in after if k.startswith("unet_opt.")}
    assert adam_state and max(adam_state) < n_unet  # state only for the UNet's parameters (group 0)


def test_causal_temporal_convs_never_see_the_next_frame_and_stay_that_way():
    from cav_core.shapes_world import architecture as arch

    torch.manual_seed(0)
    unet = arch.build_unet()
    convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 1, 1)]
    assert convs
    with torch.no_grad():  # trained-looking kernels: every tap non-zero
        for conv in convs:
            conv.weight.normal_(0, 0.05)
    keep_temporal_convs_causal(unet)
    before = [c.weight.detach().clone() for c in convs]
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-2, weight_decay=1e-2)
    x = torch.randn(1, 4, 16, 8, 8)
    for step in range(2):
        out = unet(x, torch.tensor([500]), torch.randn(1, arch.TOKEN_LENGTH, unet.config.cross_attention_dim)).sample
        opt.zero_grad()
        out.pow(2).mean().backward()
        opt.step()
    for conv, old in zip(convs, before):
        assert torch.count_nonzero(conv.weight[:, :, 2]) == 0  # the look-ahead tap: zero, and kept there
        assert not torch.equal(conv.weight[:, :, :2], old[:, :, :2])  # the other taps still learn


def test_image_steps_train_only_the_spatial_path_on_still_appearance_frames(tmp_path, monkeypatch):
    from cav_core.shapes_world import architecture as arch

    frame_counts, captions = [], []
    build_unet = arch.build_unet

    def recording_unet():
        unet = build_unet()
        unet.register_forward_pre_hook(lambda module, args: frame_counts.append(args[0].shape[2]))
        return unet

    monkeypatch.setattr(arch, "build_unet", recording_unet)
    image_caption = base_data.image_caption_for_training
    monkeypatch.setattr(base_data, "image_caption_for_training",
                        lambda scene, rng: captions.append((scene, image_caption(scene, rng))) or captions[-1][1])
    train_base.main(["--work", str(tmp_path / "first"), "--out", str(tmp_path / "model"), "--steps", "1", *TINY_RUN])
    assert frame_counts == [arch.FRAMES] and not captions  # no --image-share: clips only
    before = _checkpoint(tmp_path / "first")[2]

    frame_counts.clear()
    train_base.main(["--work", str(tmp_path / "images"), "--out", str(tmp_path / "o2"), "--steps", "1",
                     *TINY_RUN, "--init-model", str(tmp_path / "model"), "--image-share", "1"])
    after = _checkpoint(tmp_path / "images")[2]
    assert frame_counts == [1]  # every frame is its own one-frame clip
    assert captions and all(c in ("", scene.caption("")) for scene, c in captions)  # appearance only
    unet_keys = [k for k in before if k.startswith("unet.")]
    temporal = [k for k in unet_keys if any(p in k for p in ("temp_convs", "temp_attentions", "transformer_in"))]
    assert temporal and all(torch.equal(before[k], after[k]) for k in temporal)  # bypassed: no gradient
    assert any(not torch.equal(before[k], after[k]) for k in unet_keys if k not in temporal)
