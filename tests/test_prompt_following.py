"""The base model's prompt-following measures (what the model card reports)."""
import numpy as np

from tools.shapes_world import prompt_following
from cav_core.shapes_world.measure import read_clip
from cav_core.shapes_world.scenes import Scene, render, trajectory


def test_pan_travel_reads_direction_and_distance_of_rendered_pans():
    for motion, angle in prompt_following._PAN_ANGLE.items():
        scene = Scene("red", "square", "white", motion)
        error, travel = prompt_following._pan_travel(read_clip(render(scene)).trajectory, motion)
        truth = trajectory(scene)
        assert error < 5 and abs(travel - np.hypot(*(truth[-1] - truth[0]))) < 1.5, (motion, error, travel)
        opposite = [m for m, a in prompt_following._PAN_ANGLE.items() if a == (angle + 180) % 360][0]
        assert prompt_following._pan_travel(read_clip(render(scene)).trajectory, opposite)[0] > 170
    nothing = np.full((16, 2), np.nan)
    assert prompt_following._pan_travel(nothing, "left") is None


def test_pure_noise_probe_scores_only_the_pans_among_held_out_captions():
    from cav_core.base_model import load_base

    result = prompt_following.pure_noise_motion(load_base("toy"), count=6)
    pans = result["pan_direction"]["n"]
    assert 0 < pans <= 6 and 0 <= result["pan_direction"]["accuracy"] <= 1
    assert result["median_travel_px"] >= 0


def test_time_reversal_asymmetry_is_zero_for_a_fresh_unet_and_not_once_order_matters():
    import torch
    from diffusers.models.resnet import TemporalConvLayer

    from cav_core.shapes_world import architecture as arch

    torch.manual_seed(0)
    unet = arch.build_unet().eval()
    text = torch.randn(1, arch.TOKEN_LENGTH, arch.TEXT_DIM)
    assert prompt_following.time_reversal_asymmetry(unet, text, 999) < 1e-5
    with torch.no_grad():  # temporal convolutions that look only backwards: order now matters
        for layer in (m for m in unet.modules() if isinstance(m, TemporalConvLayer)):
            torch.nn.init.normal_(layer.conv4[-1].weight, std=0.02)
            for conv in (layer.conv1, layer.conv2, layer.conv3, layer.conv4):
                conv[-1].weight[:, :, 2] = 0
    assert prompt_following.time_reversal_asymmetry(unet, text, 999) > 0.1
