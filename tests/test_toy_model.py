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
    assert toy.default_size == 64 and type(toy.unet).__name__ == "UNet3DConditionModel"


@pytest.mark.xfail(strict=True, reason="the bundled base is undertrained (1200 steps): it does not follow "
                   "captions yet; see cav_core/shapes_world/MODEL_CARD.md. strict: a better model must flip this")
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
    for name in ("reference.mp4", "reference.gif", "zigzag_motion.safetensors", "loss.png",
                 "comparison.gif", "comparison.mp4", "sample_0.mp4", "sample_0.gif", "report.json"):
        assert (tmp_path / name).exists(), name
    assert len(report["samples"]) == 3


def test_evaluation_harness_runs_and_reports(tmp_path):
    """A smoke run of the ablation (tiny budgets): every metric is produced for every variant."""
    from cav_core.eval import evaluate

    summary = evaluate(str(tmp_path), motions=("zigzag",), variants=("base", "dual", "motiondirector"),
                       seeds=(0, 1), steps={"absorber": 1, "motion": 1}, sample_steps=2, log=lambda s: None)
    assert set(summary) == {"base", "dual", "motiondirector"}
    for row in summary.values():
        assert -1 <= row["fidelity"] <= 1 and 0 <= row["alignment"] <= 1 and 0 <= row["leakage"] <= 1
        assert row["samples"] == 6 and row["diversity"] >= 0
    assert (tmp_path / "table.md").read_text().startswith("| variant |")
    assert (tmp_path / "zigzag_comparison.gif").exists() and (tmp_path / "results.json").exists()
