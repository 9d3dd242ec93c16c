"""Schedules: when in the denoising run a motion LoRA acts, how sampling honours it, how the CLI takes it."""
import os

import numpy as np
import pytest
import torch

from cav_core.adapter_file import AdapterFile, save_adapter_file
from cav_core.adapters import SPATIAL, tuner_layers
from cav_core.cli import main
from cav_core.cli_common import lora_arg, lora_spec
from cav_core.compute import default_device
from cav_core.errors import CavError
from cav_core.lora_merge import merge_adapters, merge_loras
from cav_core.lora_schedule import WHOLE_RUN, LoraSchedule
from cav_core.sampling import Appearance, SampleSettings, sample_video
from cav_core.scheduled_loras import ScheduledLora, stepped_loras, strength_table
from cav_core.targeting import spatial_targets
from conftest import random_lora

# CUDA convolutions round through TF32, and fused weights round differently from a separate LoRA
# branch (see test_sampling).
TOLERANCE = 1e-4 if default_device().type == "cpu" else 1e-3


def _settings(**kw):
    return SampleSettings(**{"prompt": "a red square moving right", "steps": 4, "frames": 4, **kw})


def _state(unet):
    return {k: v.clone() for k, v in unet.state_dict().items()}


def _unchanged(unet, before) -> bool:
    after = unet.state_dict()
    return (after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
            and not list(tuner_layers(unet)))


# ---- the schedule -----------------------------------------------------------------------------------

def test_strength_at_reads_each_step_at_its_middle():
    first_half = LoraSchedule(0.0, 0.5)
    assert [first_half.strength_at(0.8, i, 4) for i in range(4)] == [0.8, 0.8, 0.0, 0.0]
    assert [first_half.strength_at(0.8, i, 5) for i in range(5)] == [0.8, 0.8, 0.0, 0.0, 0.0]  # 0.5 is not < 0.5
    assert [WHOLE_RUN.strength_at(-1.5, i, 3) for i in range(3)] == [-1.5] * 3 and WHOLE_RUN.is_whole_run
    ramp = LoraSchedule(0.2, 1.0, end_strength=0.0)  # from 1 at 0.2 to 0 at 1
    assert [ramp.strength_at(1.0, i, 5) for i in range(5)] == pytest.approx([0.0, 0.875, 0.625, 0.375, 0.125])
    assert not LoraSchedule(0.0, 1.0, end_strength=1.0).is_whole_run  # a ramp, even a flat one
    assert [LoraSchedule(0.3, 0.5).acts_at(i, 10) for i in range(10)] == [False] * 3 + [True] * 2 + [False] * 5


def test_a_window_that_holds_no_step_and_bad_bounds_are_refused():
    narrow = LoraSchedule(0.41, 0.45)
    assert narrow.check_acts(20) is narrow  # step 8's middle, 0.425, lies in it
    with pytest.raises(CavError, match="holds no step of a 10-step run.*widen the window or use more steps"):
        narrow.check_acts(10)
    for bad, message in ((LoraSchedule(0.6, 0.2), "start .0.6. must come before end"),
                         (LoraSchedule(0.5, 0.5), "must come before"),
                         (LoraSchedule(-0.1, 0.5), "start must be a fraction"),
                         (LoraSchedule(0.0, 1.5), "end must be a fraction"),
                         (LoraSchedule(float("nan"), 0.5), "within 0..1"),
                         (LoraSchedule(0.0, 0.5, float("inf")), "strength at the end must be a finite number")):
        with pytest.raises(CavError, match=message):
            bad.check()


# ---- sampling -----------------------------------------------------------------------------------------

def test_schedules_that_change_nothing_sample_as_without_them(tiny_base):
    lora = random_lora(tiny_base.unet, 1)
    plain = sample_video(tiny_base, _settings())
    whole = sample_video(tiny_base, _settings(), [(lora, 0.8)])
    assert np.array_equal(sample_video(tiny_base, _settings(), [(lora, 0.8, LoraSchedule(0, 1))]), whole)
    assert np.array_equal(sample_video(tiny_base, _settings(), [(lora, 0.8, None)]), whole)
    flat = LoraSchedule(0.0, 1.0, end_strength=0.8)  # a ramp from 0.8 to 0.8
    assert np.array_equal(sample_video(tiny_base, _settings(), [(lora, 0.8, flat)]), whole)
    # Strength 0 over its window, and 0 after it: the LoRA is off for the whole run.
    assert np.array_equal(sample_video(tiny_base, _settings(), [(lora, 0.0, LoraSchedule(0, 0.5))]), plain)
    assert not np.allclose(whole, plain, atol=1e-3)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_lora_on_the_first_half_differs_from_none_and_from_the_whole_run(tiny_base, fuse):
    a, b = random_lora(tiny_base.unet, 1), random_lora(tiny_base.unet, 2)
    plain = sample_video(tiny_base, _settings(fuse=fuse))
    whole = sample_video(tiny_base, _settings(fuse=fuse), [(a, 1.0), (b, 0.5)])
    before = _state(tiny_base.unet)
    half = sample_video(tiny_base, _settings(fuse=fuse), [(a, 1.0, LoraSchedule(0, 0.5)), (b, 0.5)])
    assert _unchanged(tiny_base.unet, before)
    assert not np.allclose(half, plain, atol=1e-3) and not np.allclose(half, whole, atol=1e-3)


def test_fused_and_unfused_schedules_agree_and_leave_the_base_as_it_was(tiny_base):
    unet = tiny_base.unet
    stack = [(random_lora(unet, 1), 1.0, LoraSchedule(0.0, 0.5, end_strength=0.3)),
             (random_lora(unet, 2), 0.7, LoraSchedule(0.3, 1.0))]
    appearance = Appearance(spatial=random_lora(unet, 3, role=SPATIAL, targets=spatial_targets(unet)), strength=0.6)
    before = _state(unet)
    fused = sample_video(tiny_base, _settings(steps=6), stack, appearance)
    assert _unchanged(unet, before)
    unfused = sample_video(tiny_base, _settings(steps=6, fuse=False), stack, appearance)
    assert _unchanged(unet, before)
    assert np.allclose(fused, unfused, atol=TOLERANCE)
    without_appearance = sample_video(tiny_base, _settings(steps=6), stack)
    assert not np.allclose(fused, without_appearance, atol=1e-3)


def test_each_step_runs_with_that_steps_strengths(tiny_base):
    """What the UNet's weights hold at every step: the base plus each LoRA at its scheduled strength."""
    unet = tiny_base.unet
    a, b = random_lora(unet, 1), random_lora(unet, 2)
    schedules = [(a, 1.0, LoraSchedule(0.0, 0.5, end_strength=0.2)), (b, -0.6, LoraSchedule(0.3, 1.0))]
    target = a.targets[0]
    weight = unet.get_submodule(target).weight
    base_weight = weight.detach().clone()
    seen = []
    hook = unet.register_forward_pre_hook(lambda *_: seen.append(weight.detach().cpu().clone()))
    try:
        sample_video(tiny_base, _settings(steps=6), schedules)
    finally:
        hook.remove()
    assert len(seen) == 6
    for step, w in enumerate(seen):
        expected = base_weight + sum(s.strength_at(k, step, 6) * lora.delta(target) for lora, k, s in schedules)
        assert torch.allclose(w, expected, atol=1e-6), step
    assert torch.equal(weight, base_weight)


def test_strengths_are_applied_again_only_at_the_steps_where_they_change(tiny_base):
    unet = tiny_base.unet
    a, b = random_lora(unet, 1), random_lora(unet, 2)
    spatial = random_lora(unet, 3, role=SPATIAL, targets=spatial_targets(unet))
    stack = [ScheduledLora(a, 1.0, LoraSchedule(0.0, 0.5, end_strength=0.0)),  # a ramp: changes every step
             ScheduledLora(b, 0.7, LoraSchedule(0.3, 1.0)),  # on once, then constant
             ScheduledLora(spatial, 0.5)]  # the appearance: constant
    steps = 10
    expected = [i for i in range(1, steps)
                if any(e.schedule.strength_at(e.strength, i, steps) != e.schedule.strength_at(e.strength, i - 1, steps)
                       for e in stack)]
    assert expected == [1, 2, 3, 4, 5]  # the ramp moves over steps 0-4 and is off from 5; b comes on at 3
    moving = unet.get_submodule(a.targets[0]).weight
    still = unet.get_submodule(spatial.targets[0]).weight
    before = _state(unet)
    with stepped_loras(unet, stack, steps, fuse=True) as strengths:
        versions = (moving._version, still._version)
        applied = []
        for i in range(steps):
            if strengths.at_step(i):
                applied.append(i)
            assert (moving._version != versions[0]) == (i in expected)  # the weights were written only then
            assert still._version == versions[1]  # the appearance's layers are never written again
            versions = (moving._version, still._version)
        assert applied == expected and strengths.changes == len(expected)
    assert _unchanged(unet, before)


def test_a_scheduled_lora_that_acts_at_no_step_is_refused_before_any_work(tiny_base):
    lora = random_lora(tiny_base.unet, 1)
    before = _state(tiny_base.unet)
    with pytest.raises(CavError, match="LoRA 2 of 2 .strength 1 over 0.41-0.45.*widen the window or use more steps"):
        sample_video(tiny_base, _settings(steps=10), [(lora, 0.5), (lora, 1.0, LoraSchedule(0.41, 0.45))])
    for bad, message in (((lora, float("nan"), LoraSchedule(0, 0.5)), "finite number"),
                         ((lora, 1.0, "0-0.5"), "must be a LoraSchedule"),
                         ((lora, 1.0, LoraSchedule(0.5, 0.2)), "must come before"),
                         ((lora,), r"must be \(LoRA, strength\)")):
        with pytest.raises(CavError, match=message):
            sample_video(tiny_base, _settings(), [bad])
    assert _unchanged(tiny_base.unet, before)
    assert strength_table([ScheduledLora(lora, 1.0, LoraSchedule(0.41, 0.45))], 20)[8] == (1.0,)


# ---- merging ------------------------------------------------------------------------------------------

def test_merging_refuses_a_schedule_and_takes_the_whole_run(tiny_base):
    a, b = random_lora(tiny_base.unet, 1), random_lora(tiny_base.unet, 2)
    with pytest.raises(CavError, match="LoRA 2 of 2 has a schedule .strength 1 to 0 over 0-0.5 of the run.: "
                                       "merging is only defined for constant strengths"):
        merge_loras([(a, 1.0), (b, 1.0, LoraSchedule(0.0, 0.5, end_strength=0.0))])
    merged = merge_loras([(a, 0.6, WHOLE_RUN), (b, -0.4)]).lora
    assert all(torch.equal(merged.tensors[k], v) for k, v in merge_loras([(a, 0.6), (b, -0.4)]).lora.tensors.items())
    mine = AdapterFile(tiny_base.name, tiny_base.fingerprint, temporal=a)
    with pytest.raises(CavError, match="b.safetensors has a schedule .strength 0.5 over 0.3-1 of the run.: merging"):
        merge_adapters([("a.safetensors", mine, 1.0), ("b.safetensors", mine, 0.5, LoraSchedule(0.3, 1.0))])
    assert merge_adapters([("a.safetensors", mine, 1.0, WHOLE_RUN)]).temporal.rank == a.rank


# ---- the command line ---------------------------------------------------------------------------------

def test_lora_specs_parse_strength_window_and_ramp():
    assert lora_spec("a.safetensors") == ("a.safetensors", 1.0, WHOLE_RUN)
    assert lora_spec("a.safetensors:0.8") == ("a.safetensors", 0.8, WHOLE_RUN)
    assert lora_spec("a.safetensors:0.8@0-1") == ("a.safetensors", 0.8, WHOLE_RUN)  # @0-1: no schedule
    assert lora_spec("a.safetensors:0.8@0-0.5") == ("a.safetensors", 0.8, LoraSchedule(0.0, 0.5))
    assert lora_spec("a.safetensors:1~0.2@0.3-1") == ("a.safetensors", 1.0, LoraSchedule(0.3, 1.0, 0.2))
    assert lora_spec("a.safetensors:-1~0") == ("a.safetensors", -1.0, LoraSchedule(0.0, 1.0, 0.0))
    assert lora_spec("a.safetensors:0.8@1e-1-.5") == ("a.safetensors", 0.8, LoraSchedule(0.1, 0.5))
    assert lora_spec("C:\\loras\\a.safetensors") == ("C:\\loras\\a.safetensors", 1.0, WHOLE_RUN)
    assert lora_spec("C:\\loras\\a.safetensors:0.5@0.5-1") == ("C:\\loras\\a.safetensors", 0.5, LoraSchedule(0.5, 1))
    assert lora_spec("dir:x/a@v2.safetensors") == ("dir:x/a@v2.safetensors", 1.0, WHOLE_RUN)  # no number: a path
    assert lora_arg("a.safetensors:0.8@0-1") == ("a.safetensors", 0.8)


@pytest.mark.parametrize("spec, message", [
    ("a.safetensors:0.8@0.5", "the schedule reads @START-END"),
    ("a.safetensors:0.8@", "the schedule reads @START-END"),
    ("a.safetensors:0.8@0-0.5@0.6-1", "the schedule reads @START-END"),
    ("a.safetensors:0.8@0.6-0.2", "start .0.6. must come before end .0.2."),
    ("a.safetensors:0.8@0.5-0.5", "must come before"),
    ("a.safetensors:0.8@0-1.5", "end must be a fraction of the denoising run within 0..1"),
    ("a.safetensors:0.8@nan-1", "start must be a fraction"),
    ("a.safetensors:0.8@0-inf", "end must be a fraction"),
    ("a.safetensors:nan@0-0.5", "the weight must be a finite number"),
    ("a.safetensors:1~inf@0-0.5", "the strength at the end must be a finite number"),
    ("a.safetensors:1~@0-0.5", "a ramp reads STRENGTH~END_STRENGTH"),
    ("a.safetensors:1~0.2~0", "a ramp reads STRENGTH~END_STRENGTH"),
])
def test_bad_specs_are_one_line_errors_before_any_work(tmp_path, capsys, spec, message):
    with pytest.raises(CavError, match=message):
        lora_spec(spec)
    assert main(["sample", "--base", str(tmp_path / "none"), "--lora", spec, "--prompt", "x",
                 "--out", str(tmp_path / "o.gif")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}: ") and err.count("\n") == 1 and message.split(".")[0] in err, err
    assert os.listdir(tmp_path) == []


def test_cli_samples_a_schedule_and_refuses_one_where_it_has_no_meaning(tiny_base, tiny_base_dir, tmp_path, capsys):
    a = save_adapter_file(tmp_path / "a.safetensors", AdapterFile(tiny_base.name, tiny_base.fingerprint,
                                                                  temporal=random_lora(tiny_base.unet, 1)))
    common = ["--base", tiny_base_dir, "--prompt", "a blue circle", "--steps", "4", "--frames", "4", "--quiet"]
    out = tmp_path / "scheduled.gif"
    assert main(["sample", "--lora", f"{a}:0.8@0-0.5", "--lora", f"{a}:1~0@0.3-1", *common, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.exists()
    # A window narrower than a step is refused before the base is even loaded.
    assert main(["sample", "--lora", f"{a}:1@0.41-0.45", *common[2:], "--base", str(tmp_path / "none"),
                 "--steps", "10", "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no step of a 10-step run" in err and "widen the window" in err, err
    assert main(["merge", f"{a}:0.6", f"{a}:1@0.5-1", "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "merging is only defined for constant strengths" in err, err
    assert main(["sample", "--appearance-lora", f"{a}:1~0", *common, "--out", str(tmp_path / "y.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the appearance acts at one strength for the whole run" in err, err
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors", "scheduled.gif"]
