"""The Motion LoRA Stack node (rows of files and sockets with schedules), the old 3-slot stack it
replaces, merging, and stack presets, executed in-process against ComfyUI (--cpu) on the tiny base.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from cav_core.errors import CavError

from .cav_test_helpers import TINY, run

SAMPLE = dict(prompt="a blue circle", negative="", seed=3, steps=4, cfg=5.0, frames=5, width=16, height=16,
              scheduler="ddim", fps=8.0, noise_prior=0.0)


@pytest.fixture()
def base(nodes):
    return run(nodes["CAV_LoadBase"], model=TINY, precision="auto").result[0]


def random_motion(base, name: str, seed: int):
    """A motion LoRA for ``base`` with random, clearly non-zero weights."""
    from cav_core import adapters
    from cav_core.adapter_file import AdapterFile
    from cav_core.adapters import TEMPORAL, LoraWeights
    from cav_core.targeting import temporal_targets
    from cav_pack.nodes.values import MotionLora

    unet = base.base.unet
    adapters.inject_lora(unet, "tmp", temporal_targets(unet), 2, 2.0)
    shapes = {k: v.shape for k, v in adapters.extract_lora(unet, "tmp", TEMPORAL, 2, 2.0).tensors.items()}
    adapters.remove_adapters(unet)
    g = torch.Generator().manual_seed(seed)
    lora = LoraWeights(TEMPORAL, 2, 2.0, {k: torch.randn(s, generator=g) * 0.3 for k, s in shapes.items()})
    return MotionLora(name, AdapterFile(base.base.name, base.base.fingerprint, temporal=lora))


def save(host_dirs, motion, name: str) -> str:
    from cav_core.adapter_file import save_adapter_file

    path = os.path.join(host_dirs.loras, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_adapter_file(path, motion.adapter)
    return name


def rows(*items) -> str:
    return json.dumps(list(items))


def entries(stack):
    return [(e.name, e.strength, e.schedule.start, e.schedule.end, e.schedule.end_strength) for e in stack.entries]


def test_rows_sockets_and_an_upstream_stack_make_one_stack_in_order(nodes, base, host_dirs):
    from cav_pack.nodes.values import MotionLoraStack

    save(host_dirs, random_motion(base, "a", 1), "a.safetensors")
    save(host_dirs, random_motion(base, "b", 2), "sub/b.safetensors")
    trained, extra = random_motion(base, "trained", 3), random_motion(base, "extra", 4)
    upstream = MotionLoraStack().plus(random_motion(base, "up", 5), 0.3)
    text = rows({"lora": "a.safetensors", "strength": 0.5},
                {"input": "motion_1", "strength": -1.0, "start": 0.2, "end": 0.6},
                {"lora": "sub/b.safetensors", "on": False},
                {"lora": None},  # a row without a motion adds nothing
                {"lora": "sub/b.safetensors", "strength": 1.5, "end_strength": 0.0})
    out = run(nodes["CAV_MotionStack"], rows=text, motion_loras={"motion_1": trained, "motion_2": extra},
              stack=upstream)
    (stack,) = out.result
    # the upstream stack first, then the rows that are on, then a connected socket no row names (at 1.0)
    assert entries(stack) == [("up", 0.3, 0.0, 1.0, None), ("a", 0.5, 0.0, 1.0, None),
                              ("trained", -1.0, 0.2, 0.6, None), ("b", 1.5, 0.0, 1.0, 0.0),
                              ("extra", 1.0, 0.0, 1.0, None)]
    assert stack.entries[2].lora is trained.temporal
    text_ui = out.ui["text"][0].splitlines()
    assert text_ui[2] == "trained: -1.00 from 20% to 60% of the run (14%)"
    assert text_ui[3] == "b: +1.50 to +0.00 (25%)"
    assert [e["name"] for e in out.ui["cav_stack"]] == ["up", "a", "trained", "b", "extra"]
    assert sum(e["share"] for e in out.ui["cav_stack"]) == pytest.approx(1.0)


def test_queue_time_validation_names_the_row(nodes, base, host_dirs):
    node = nodes["CAV_MotionStack"]
    save(host_dirs, random_motion(base, "a", 1), "a.safetensors")
    assert node.validate_inputs(rows=rows({"lora": "a.safetensors"}, {"lora": "gone.safetensors", "on": False})) is True
    cases = {rows({"lora": "a.safetensors"}, {"lora": "gone.safetensors"}): "row 2 (gone.safetensors): motion LoRA",
             rows({"lora": "../escape.safetensors"}): "row 1 (../escape.safetensors): the file '../escape",
             rows({"lora": "a.safetensors", "strength": float("nan")}): "strength must be a finite number",
             rows({"lora": "a.safetensors", "start": 0.9, "end": 0.1}): "must come before end",
             "[{": "rows is not valid JSON"}
    for text, words in cases.items():
        message = node.validate_inputs(rows=text)
        assert isinstance(message, str) and words in message, (text, message)


def test_a_row_naming_a_socket_that_is_not_connected_is_an_error(nodes):
    with pytest.raises(Exception, match=r"row 1 \(socket motion_2\) takes the socket motion_2, which is not conn"):
        run(nodes["CAV_MotionStack"], rows=rows({"input": "motion_2"}), motion_loras={})


def test_the_stack_runs_again_when_a_file_it_uses_changes(nodes, base, host_dirs):
    node = nodes["CAV_MotionStack"]
    save(host_dirs, random_motion(base, "a", 1), "a.safetensors")
    text = rows({"lora": "a.safetensors"})
    before = node.fingerprint_inputs(rows=text)
    assert node.fingerprint_inputs(rows=text) == before
    path = os.path.join(host_dirs.loras, "a.safetensors")
    os.utime(path, (1, 1))
    assert node.fingerprint_inputs(rows=text) != before
    assert node.fingerprint_inputs(rows=rows({"lora": "a.safetensors", "on": False})) != before


def test_unscheduled_rows_sample_as_the_old_three_slot_stack_did(nodes, base, host_dirs):
    a, b = random_motion(base, "a", 1), random_motion(base, "b", 2)
    save(host_dirs, a, "a.safetensors")
    new = run(nodes["CAV_MotionStack"], rows=rows({"lora": "a.safetensors", "strength": 0.7},
                                                   {"input": "motion_1", "strength": -0.4}),
              motion_loras={"motion_1": b}).result[0]
    old = run(nodes["CAV_MotionLoraStack"], motion_lora_1=a, strength_1=0.7, motion_lora_2=b, strength_2=-0.4,
              strength_3=1.0).result[0]
    assert entries(new) == entries(old)
    with_new = run(nodes["CAV_SampleVideo"], base=base, motion_loras=new, **SAMPLE).result[0]
    with_old = run(nodes["CAV_SampleVideo"], base=base, motion_loras=old, **SAMPLE).result[0]
    plain = run(nodes["CAV_SampleVideo"], base=base, **SAMPLE).result[0]
    assert torch.equal(with_new, with_old) and not torch.allclose(with_new, plain, atol=1e-3)


def test_a_scheduled_row_samples_differently_from_the_same_row_over_the_whole_run(nodes, base):
    """Needs sampling that honours schedules (cav_core.sampling with (LoRA, strength, schedule))."""
    motion = random_motion(base, "a", 1)

    def sample(**row):
        stack = run(nodes["CAV_MotionStack"], rows=rows({"input": "motion_1", "strength": 1.0, **row}),
                    motion_loras={"motion_1": motion}).result[0]
        return run(nodes["CAV_SampleVideo"], base=base, motion_loras=stack, **SAMPLE).result[0]

    whole, late, ramp = sample(), sample(start=0.5, end=1.0), sample(end_strength=0.0)
    assert not torch.allclose(whole, late, atol=1e-4) and not torch.allclose(whole, ramp, atol=1e-4)


def test_merge_refuses_a_stack_with_scheduled_rows_and_says_why(nodes, base, host_dirs):
    motion = random_motion(base, "a", 1)
    stack = run(nodes["CAV_MotionStack"], rows=rows({"input": "motion_1", "start": 0.0, "end": 0.5}),
                motion_loras={"motion_1": motion}).result[0]
    with pytest.raises(Exception, match=r"a has a schedule \(strength 1 over 0-0.5 of the run\): merging is only "
                                        "defined for constant strengths"):
        run(nodes["CAV_MergeMotionLoras"], stack=stack, name="m", max_rank=0, save=True)
    assert os.listdir(host_dirs.loras) == []
    plain = run(nodes["CAV_MotionStack"], rows=rows({"input": "motion_1", "strength": 0.5}),
                motion_loras={"motion_1": motion}).result[0]
    merged, saved = run(nodes["CAV_MergeMotionLoras"], stack=plain, name="m", max_rank=0, save=True).result
    assert saved == "m.safetensors" and merged.adapter.training["merged_from"][0]["weight"] == 0.5


def test_the_old_stack_is_deprecated_with_its_inputs_unchanged(nodes):
    schema = nodes["CAV_MotionLoraStack"].GET_SCHEMA()
    assert schema.is_deprecated and "Deprecated" in schema.description
    assert [i.id for i in schema.inputs] == ["motion_lora_1", "strength_1", "motion_lora_2", "strength_2",
                                            "motion_lora_3", "strength_3", "stack"]
    new = nodes["CAV_MotionStack"].GET_SCHEMA()
    assert not new.is_deprecated and new.display_name == "Motion LoRA Stack (Customize-A-Video)"


# ---- presets -----------------------------------------------------------------------------------

@pytest.fixture()
def presets(comfy, host_dirs):
    from cav_pack.nodes import presets

    return presets


def test_presets_are_saved_atomically_listed_and_read_back(presets, host_dirs):
    folder = presets.preset_folder()
    assert folder == os.path.join(host_dirs.loras, "stack_presets")
    saved = presets.save_preset(folder, "Two motions", [{"lora": "a.safetensors", "strength": 0.5, "start": 0.2},
                                                        {"lora": "sub/b.safetensors", "on": False}])
    assert saved["rows"][0] == {"on": True, "lora": "a.safetensors", "input": None, "strength": 0.5, "start": 0.2,
                                "end": 1.0, "end_strength": None}
    assert os.listdir(folder) == ["Two motions.json"]  # no temporary left beside it
    assert presets.read_preset(folder, "Two motions") == saved
    presets.save_preset(folder, "Two motions", [{"lora": "c.safetensors"}])  # same name: replaced
    assert presets.read_preset(folder, "Two motions")["rows"][0]["lora"] == "c.safetensors"
    assert presets.list_presets(folder) == [{"name": "Two motions", "rows": 1}]


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "a/b", "", ".hidden", "x" * 65, None, 3, "ok."])
def test_bad_preset_names_are_refused_and_nothing_is_written(presets, host_dirs, name):
    folder = presets.preset_folder()
    with pytest.raises(CavError, match="is not allowed"):
        presets.save_preset(folder, name, [{"lora": "a.safetensors"}])
    with pytest.raises(CavError, match="is not allowed"):
        presets.read_preset(folder, name)
    assert not os.path.exists(folder) and sorted(os.listdir(os.path.dirname(host_dirs.loras))) == \
        ["diffusers", "input", "loras", "output", "temp"]


def test_preset_rows_are_checked_and_socket_rows_are_not_kept(presets, host_dirs):
    folder = presets.preset_folder()
    with pytest.raises(CavError, match="row 1 \\(socket motion_1\\) takes a socket"):
        presets.save_preset(folder, "p", [{"input": "motion_1"}])
    with pytest.raises(CavError, match="start \\(0.9\\) must come before end"):
        presets.save_preset(folder, "p", [{"lora": "a.safetensors", "start": 0.9, "end": 0.1}])
    with pytest.raises(CavError, match="must be a JSON list"):
        presets.save_preset(folder, "p", {"lora": "a.safetensors"})
    assert not os.path.exists(folder)


def test_broken_presets_are_reported_by_name_and_the_rest_still_list(presets, host_dirs):
    folder = presets.preset_folder()
    presets.save_preset(folder, "good", [{"lora": "a.safetensors"}])
    with open(os.path.join(folder, "broken.json"), "w") as f:
        f.write('{"rows": [')
    with open(os.path.join(folder, "shape.json"), "w") as f:
        json.dump({"rows": [{"lora": "a.safetensors", "strength": "loud"}]}, f)
    with pytest.raises(CavError, match="preset 'broken' .* is not valid JSON"):
        presets.read_preset(folder, "broken")
    with pytest.raises(presets.PresetMissing, match="there is no preset 'nope'"):
        presets.read_preset(folder, "nope")
    listed = {p["name"]: p for p in presets.list_presets(folder)}
    assert listed["good"] == {"name": "good", "rows": 1}
    assert "not valid JSON" in listed["broken"]["error"]
    assert "strength must be a finite number" in listed["shape"]["error"]
