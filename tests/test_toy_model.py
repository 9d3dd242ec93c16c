"""The bundled shapes-world model: loads like ModelScope, follows captions, runs the demo."""
import os

import pytest

from cav_core.base_model import TOY_MODEL_DIR, inspect_base_folder, load_base
from cav_core.sampling import SampleSettings, sample_video
from cav_core.shapes_world.measure import read_clip


@pytest.fixture(scope="module")
def toy():
    return load_base("toy")


def test_bundled_model_has_the_modelscope_layout_and_size(toy):
    index = inspect_base_folder(TOY_MODEL_DIR)  # the same checks a ModelScope folder passes
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert os.path.isdir(os.path.join(TOY_MODEL_DIR, sub))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(TOY_MODEL_DIR) for f in fs)
    assert total <= 25 * 2**20
    assert toy.default_size == (64, 64) and type(toy.unet).__name__ == "UNet3DConditionModel"


@pytest.mark.parametrize("colour,background", [("red", "white"), ("blue", "gray"), ("yellow", "black")])
def test_short_sample_follows_the_caption_colour(toy, colour, background):
    clip = sample_video(toy, SampleSettings(prompt=f"a {colour} square moving right on a {background} background",
                                            seed=0, steps=12))
    reading = read_clip(clip)
    assert reading.colour == colour
    assert reading.background == background


def test_demo_runs_end_to_end_in_quick_mode(tmp_path):
    from cav_core.demo import run_demo

    report = run_demo(str(tmp_path), quick=True, quiet=True)
    for name in ("reference.mp4", "reference.gif", "zigzag_motion.safetensors", "zigzag_motion.webp", "loss.png",
                 "comparison.gif", "comparison.mp4", "sample_0.mp4", "sample_0.gif", "report.json"):
        assert (tmp_path / name).exists(), name
    assert len(report["samples"]) == 3
    # Where the time went: each part measured, together the whole run (each is rounded to 0.1 s).
    parts = report["seconds_by_part"]
    assert list(parts) == ["loading", "absorber", "motion", "sampling"] and min(parts.values()) >= 0
    assert parts["motion"] > 0 and parts["sampling"] > 0
    assert abs(sum(parts.values()) - report["seconds"]) <= 0.3
    assert report["training_steps"] == {"absorber": 2, "motion": 2}
    from cav_core.adapter_file import load_adapter_file

    adapter = load_adapter_file(str(tmp_path / "zigzag_motion.safetensors"))
    assert adapter.training["absorber"]["kind"] == "dual" and adapter.textual_inversion is not None
    # The demo trains with the bundled base's recipe, which the file records.
    assert adapter.training["recipe"] == "shapes_world" and adapter.training["absorber_token_in_prompt"] is False
    assert adapter.temporal.rank == 16 and adapter.training["include_temporal_convs"] is True


def test_evaluation_harness_runs_reports_and_resumes(tmp_path, monkeypatch):
    """A smoke run of the ablation (tiny budgets): every metric is produced for every variant."""
    from tools.evaluate import evaluate

    summary = evaluate(str(tmp_path), motions=("zigzag",), variants=("base", "dual", "motiondirector"),
                       seeds=(0, 1), steps={"absorber": 1, "motion": 1}, sample_steps=2, log=lambda s: None)
    assert set(summary) == {"base", "dual", "motiondirector"}
    for row in summary.values():
        assert -1 <= row["fidelity"] <= 1 and 0 <= row["alignment"] <= 1 and 0 <= row["leakage"] <= 1
        assert row["samples"] == 6 and row["diversity"] >= 0
        assert 0 <= row["leakage_colour"] <= 1 and 0 <= row["alignment_background"] <= 1
    assert (tmp_path / "table.md").read_text().startswith("| variant |")
    for name in ("zigzag_comparison.gif", "results.json", "metrics.png"):
        assert (tmp_path / name).exists(), name

    # Started again with the same settings, it trains nothing and reports the same numbers.
    import tools.evaluate as evaluation

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was trained again")

    monkeypatch.setattr(evaluation, "_train", no_training)
    again = evaluate(str(tmp_path), motions=("zigzag",), variants=("base", "dual", "motiondirector"),
                     seeds=(0, 1), steps={"absorber": 1, "motion": 1}, sample_steps=2, log=lambda s: None)
    assert again == summary

    # One more variant: only that one is trained, the others are read back.
    trained = []
    monkeypatch.setattr(evaluation, "_train", lambda variant, *args, **kwargs: trained.append(variant))
    more = evaluate(str(tmp_path), motions=("zigzag",), variants=("base", "none", "dual"),
                    seeds=(0, 1), steps={"absorber": 1, "motion": 1}, sample_steps=2, log=lambda s: None)
    assert trained == ["none"] and more["dual"] == summary["dual"]


@pytest.mark.parametrize("method", ["none", "ti", "dual", "dual_no_token", "motiondirector"])
def test_a_convs_variant_is_its_method_with_the_recipes_t_lora(toy, method, monkeypatch):
    """Each *_convs variant trains the same method (absorber kind, or MotionDirector's joint LoRAs)
    with the bundled base's recipe T-LoRA: attention and temporal convolutions, at the recipe's
    rank, for its own step budget; the plain variant keeps the paper's attention-only rank-4 T-LoRA."""
    import tools.evaluate as evaluation
    from cav_core.shapes_world.references import reference_path
    from cav_core.video_io import VideoOptions, read_video

    assert f"{method}_convs" in evaluation.VARIANTS and method in evaluation.VARIANTS
    frames = read_video(reference_path("zigzag"), VideoOptions(max_frames=4)).frames
    budget = {"absorber": 1, "motion": 1, "convs_motion": 2}
    lora = evaluation._train(f"{method}_convs", toy, frames, "zigzag", budget, 0)
    plain = evaluation._train(method, toy, frames, "zigzag", budget, 0)
    assert lora.rank == toy.recipe.motion_settings(prompt="x").rank == 16 and plain.rank == 4
    assert any(".temp_convs." in t for t in lora.targets)
    assert not any(".temp_convs." in t for t in plain.targets)
    assert all("temp_attentions" in t or "transformer_in" in t or ".temp_convs." in t for t in lora.targets)
    # Given a learning rate and a lowest timestep, the recipe variant trains with them.
    seen, settings = [], []
    trainer = "train_motiondirector" if method == "motiondirector" else "train_motion"
    original = getattr(evaluation, trainer)
    monkeypatch.setattr(evaluation, trainer, lambda base, frames, motion, *rest: (
        settings.append(motion), original(base, frames, motion, *rest))[1])
    handle = toy.unet.register_forward_pre_hook(lambda _, args: seen.append(int(args[1].reshape(-1)[0])))
    try:
        evaluation._train(f"{method}_convs", toy, frames, "zigzag",
                          {**budget, "convs_min_timestep": 990, "convs_lr": 0.25}, 0)
    finally:
        handle.remove()
    assert (settings[0].lr, settings[0].min_timestep, settings[0].steps) == (0.25, 990, 2)
    # The T-LoRA's 2 steps are the last forwards; MotionDirector's steps each run a frame, then the clip.
    t_lora = seen[::-1][:4:2] if method == "motiondirector" else seen[-2:]
    assert len(t_lora) == 2 and min(t_lora) >= 990


def test_the_no_token_variant_trains_the_dual_absorber_and_leaves_its_token_out(toy, monkeypatch):
    import tools.evaluate as evaluation
    from cav_core.shapes_world.references import reference_path
    from cav_core.video_io import VideoOptions, read_video

    seen = {}

    def fake_train_motion(base, frames, settings, absorber, compute):
        seen.update(settings=settings, absorber=absorber, compute=compute)
        return (None, [])

    monkeypatch.setattr(evaluation, "train_motion", fake_train_motion)
    frames = read_video(reference_path("zigzag"), VideoOptions(max_frames=4)).frames
    for variant, token in (("dual_no_token", False), ("dual", True)):
        evaluation._train(variant, toy, frames, "zigzag", {"absorber": 1, "motion": 1}, 0)
        assert seen["absorber"].spatial is not None and seen["absorber"].textual_inversion is not None
        assert seen["settings"].absorber_token_in_prompt is token
        assert seen["compute"].bf16_activations is False
    evaluation._train("dual", toy, frames, "zigzag", {"absorber": 1, "motion": 1, "bf16_activations": True}, 0)
    assert seen["compute"].bf16_activations is True  # --bf16-activations reaches the T-LoRA's training


def test_bundled_model_denoises_a_real_clip(toy):
    """What the base did learn: from a rendered clip noised to t=500, its one-step clean estimate
    reads back with the same colour and background, moving along the same path (corners come
    back rounded, so the shape is not asserted; see the model card's diagnosis)."""
    import torch
    from diffusers import DDPMScheduler

    from cav_core.latents import decode_latents, encode_clip
    from cav_core.shapes_world.measure import velocity_similarity
    from cav_core.shapes_world.scenes import Scene, render, trajectory
    from cav_core.text import encode_prompts
    from cav_core.diffusion import clean_estimate, diffusion_target

    scene = Scene("red", "square", "white", "right", size=0.26)
    scheduler = DDPMScheduler.from_config(toy.scheduler_config)
    latents = encode_clip(toy.vae, render(scene))
    t = torch.tensor([500])
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    noisy = scheduler.add_noise(latents, noise, t)
    with torch.no_grad():
        pred = toy.unet(noisy, t, encode_prompts(toy, [scene.caption()])).sample
        pred_uncaptioned = toy.unet(noisy, t, encode_prompts(toy, [""])).sample
    x0, target = clean_estimate(scheduler, noisy, pred, t), diffusion_target(scheduler, latents, noise, t)
    reading = read_clip(decode_latents(toy.vae, x0[0]))
    # Judged against what the VAE itself gives back for the clean clip (the model card's
    # "ceiling"), so the test is about the UNet, not the VAE's colours.
    round_trip = read_clip(decode_latents(toy.vae, latents[0]))
    assert reading.colour == round_trip.colour and reading.background == round_trip.background == "white"
    assert velocity_similarity(reading.trajectory, trajectory(scene)) > 0.8
    # Relative bounds: the error's scale depends on the VAE's latents (a VAE trained with another KL
    # weight moves it tenfold), what it must beat does not. It must do far better than a prediction
    # that knows nothing, and its caption must help.
    error = float(((pred - target) ** 2).mean())
    assert error < 0.5 * float((target ** 2).mean())
    assert error < float(((pred_uncaptioned - target) ** 2).mean())
