"""The values passed between nodes (no ComfyUI needed)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cav_core.adapter_file import AdapterFile, TokenEmbeddings
from cav_core.adapters import SPATIAL, TEMPORAL, LoraWeights
from cav_core.errors import CavError
from cav_core.absorber_training import Absorber


@pytest.fixture()
def values(pack):
    from cav_pack.nodes import values

    return values


def lora(role=TEMPORAL, value=1.0):
    return LoraWeights(role, 2, 2.0, {"blk.to_q.lora_A.weight": torch.full((2, 4), value),
                                      "blk.to_q.lora_B.weight": torch.full((4, 2), value)})


def motion(values, name="zigzag", fingerprint="f" * 16, spatial=None, ti=None):
    return values.MotionLora(name, AdapterFile("toy", fingerprint, temporal=lora(), spatial=spatial,
                                               textual_inversion=ti))


def loaded(values, fingerprint="f" * 16):
    base = SimpleNamespace(name="toy", fingerprint=fingerprint, describe=f"toy (architecture {fingerprint})")
    return values.LoadedBase(base=base, patcher=None, choice="toy")


def test_stack_grows_into_new_values_and_never_mutates(values):
    empty = values.MotionLoraStack()
    one = empty.plus(motion(values, "zigzag"), 0.6)
    two = one.plus(motion(values, "eight"), -0.2)
    assert empty.entries == () and len(one.entries) == 1 and len(two.entries) == 2
    assert two.entries[0] is one.entries[0]
    with pytest.raises(AttributeError):
        one.entries = ()  # frozen


def test_stack_weights_leave_out_zero_and_mix_by_absolute_strength(values):
    stack = values.MotionLoraStack().plus(motion(values, "a"), 0.6).plus(motion(values, "b"), -0.2) \
        .plus(motion(values, "c"), 0.0)
    assert [(s, schedule.is_whole_run) for _, s, schedule in stack.weighted()] == [(0.6, True), (-0.2, True)]
    mix = stack.mix()
    assert [m["name"] for m in mix] == ["a", "b", "c"]
    assert [round(m["share"], 3) for m in mix] == [0.75, 0.25, 0.0]
    assert values.MotionLoraStack().mix() == []


def test_stack_entries_carry_their_schedule_and_share_by_presence_over_the_run(values):
    from cav_core.lora_schedule import LoraSchedule

    stack = values.MotionLoraStack().plus(motion(values, "a"), 1.25) \
        .plus(motion(values, "b"), 1.0, LoraSchedule(0.0, 0.5)) \
        .plus(motion(values, "c"), 0.0, LoraSchedule(0.5, 1.0, 1.0)) \
        .plus(motion(values, "d"), 1.0, LoraSchedule(0.0, 1.0, -1.0)) \
        .plus(motion(values, "e"), 0.0, LoraSchedule(0.2, 0.4))
    assert stack.has_schedules and not values.MotionLoraStack().plus(motion(values), 1.0).has_schedules
    weighted = stack.weighted()  # e is zero all along; c starts at zero but ramps up
    assert [(s, sch) for _, s, sch in weighted] == [(1.25, LoraSchedule()), (1.0, LoraSchedule(0.0, 0.5)),
                                                   (0.0, LoraSchedule(0.5, 1.0, 1.0)),
                                                   (1.0, LoraSchedule(0.0, 1.0, -1.0))]
    # presence: a 1.25, b 0.5 (half the run), c 0.25 (ramp 0->1 over half), d 0.5 (|1 -> -1|), e 0
    mix = stack.mix()
    assert [round(m["share"], 4) for m in mix] == [0.5, 0.2, 0.1, 0.2, 0.0]
    assert (mix[1]["start"], mix[1]["end"], mix[1]["end_strength"]) == (0.0, 0.5, None)
    assert mix[2]["end_strength"] == 1.0
    with pytest.raises(CavError, match="schedule of 'zigzag': start"):
        values.MotionLoraStack().plus(motion(values), 1.0, LoraSchedule(0.6, 0.4))


def test_stack_refuses_a_lora_from_another_base_naming_both(values):
    stack = values.MotionLoraStack().plus(motion(values, fingerprint="a" * 16), 1.0)
    with pytest.raises(CavError, match=r"motion LoRA 'zigzag' was trained on base 'toy' \(architecture a+\)"):
        stack.check_fits(loaded(values, "b" * 16))
    stack.check_fits(loaded(values, "a" * 16))


def test_motion_lora_needs_a_temporal_part(values):
    with pytest.raises(CavError, match="holds no motion"):
        values.MotionLora("absorber_only", AdapterFile("toy", "f" * 16, spatial=lora(SPATIAL)))


def test_appearance_from_absorber_or_motion_file(values):
    ti = TokenEmbeddings(("<cav-ref>",), torch.zeros(1, 4))
    absorber = values.TrainedAbsorber(Absorber(lora(SPATIAL), ti), "toy", "f" * 16)
    assert absorber.kind == "dual"
    both = values.choose_appearance(absorber, None, True, True, 0.8)
    assert both.spatial is not None and both.tokens == ("<cav-ref>",) and both.to_engine().strength == 0.8
    only_ti = values.choose_appearance(absorber, None, False, True, 1.0)
    assert only_ti.spatial is None and only_ti.textual_inversion is ti
    from_file = values.choose_appearance(None, motion(values, spatial=lora(SPATIAL)), True, True, 1.0)
    assert from_file.source == "motion LoRA 'zigzag'" and from_file.textual_inversion is None
    with pytest.raises(CavError, match="no S-LoRA and no textual inversion"):
        values.choose_appearance(None, motion(values), True, True, 1.0)
    with pytest.raises(CavError, match="either"):
        values.choose_appearance(absorber, motion(values), True, True, 1.0)
    with pytest.raises(CavError, match="connect an absorber"):
        values.choose_appearance(None, None, True, True, 1.0)


def test_motion_summary_hides_the_long_target_lists(values):
    summary = motion(values, spatial=lora(SPATIAL)).summary()
    assert summary["name"] == "zigzag" and summary["kinds"] == ["temporal", "spatial"]
    assert "targets" not in summary["temporal"] and summary["temporal"]["rank"] == 2


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "nan"])
def test_a_non_finite_strength_is_refused_where_it_is_set(values, strength):
    with pytest.raises(CavError, match="strength of 'zigzag'.*finite number"):
        values.MotionLoraStack().plus(motion(values), strength)
    with pytest.raises(CavError, match="finite number"):
        values.choose_appearance(None, motion(values, spatial=lora(SPATIAL)), True, True, float(strength))


def test_a_stack_entry_carries_its_lora_s_preview_for_a_merge(values):
    from cav_core.motion_preview import MotionPreview

    preview = MotionPreview(data=b"RIFF")
    with_preview = values.MotionLora("a", motion(values).adapter, preview=preview)
    stack = values.MotionLoraStack().plus(with_preview, 1.0).plus(motion(values, "b"), 0.5)
    assert stack.entries[0].preview is preview and stack.entries[1].preview is None
