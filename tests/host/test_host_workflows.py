"""Every shipped workflow, converted from its UI-format file, runs through POST /prompt, and so do
workflows saved with nodes that are deprecated since, not gone: one from before the training
settings could be auto, one with the 3-slot Motion LoRA Stack fed by a Load Motion LoRA.

The workflows are shipped for the bundled shapes-world model. To keep the suite short the
converted prompts get fewer steps (2 training steps per stage, 2 denoising steps); frame counts
and sizes stay as shipped (0: the base's recipe) and are checked on the saved videos. Without the bundled model the
workflow runs are skipped, unless CAV_HOST_TEST_BASE=tiny runs them on the tiny random-init base
or CAV_HOST_TEST_BASE=/path/to/a/text-to-video/folder on that base (e.g. a shapes-world export).
"""
from __future__ import annotations

import glob
import json
import os
import urllib.parse

import pytest

from .host_client import ROOT, TOY_MODEL, assert_success, base_choice, messages, read_video, write_motion_lora
from tools.comfyui.ui_to_api import ui_to_api

WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))
OLD_WORKFLOW = os.path.join(ROOT, "tests", "data", "workflow_one_shot_before_recipes.json")
OLD_STACK_WORKFLOW = os.path.join(ROOT, "tests", "data", "workflow_multi_motion_3slot.json")
MOTION_TRAINERS = ("CAV_TrainMotion", "CAV_TrainMotionLora")
SHORT_STEPS = {"CAV_TrainAbsorber": 2, "CAV_SampleVideo": 2, **{t: 2 for t in MOTION_TRAINERS}}


def shipped_prompt(host, path: str) -> dict:
    base = base_choice()
    if base is None:
        pytest.skip(f"the bundled shapes-world model is not in this checkout ({TOY_MODEL}); "
                    "set CAV_HOST_TEST_BASE=tiny (a tiny random-init base) or =/path/to/a/base folder to run them")
    with open(path) as f:
        prompt = ui_to_api(json.load(f), host.object_info)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in SHORT_STEPS:
            inputs["steps"] = SHORT_STEPS[node["class_type"]]
        if node["class_type"] in MOTION_TRAINERS:
            inputs["preview_every"] = 1  # exercise the previews too
        if node["class_type"] == "CAV_LoadBase" and base:
            inputs["model"] = base
    return prompt


def upstream(prompt: dict, node_id: str, class_type: str) -> str:
    """The nearest node of ``class_type`` that ``node_id`` depends on."""
    todo, seen = [node_id], set()
    while todo:
        current = todo.pop(0)
        for value in prompt[current]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and value[0] not in seen:
                seen.add(value[0])
                if prompt[value[0]]["class_type"] == class_type:
                    return value[0]
                todo.append(value[0])
    raise AssertionError(f"node {node_id} does not depend on a {class_type}")


def check_outputs(host, prompt: dict, entry: dict) -> None:
    outputs = entry["outputs"]
    saves = [k for k, v in prompt.items() if v["class_type"] == "SaveVideo"]
    assert saves, "every shipped workflow saves a video"
    for node_id in saves:
        files = outputs[node_id]["images"]
        assert len(files) == 1
        path = os.path.join(host.dirs["output"], files[0]["subfolder"], files[0]["filename"])
        assert os.path.isfile(path), path
        sample = prompt[upstream(prompt, node_id, "CAV_SampleVideo")]["inputs"]
        base = loaded_base(host, prompt[upstream(prompt, node_id, "CAV_LoadBase")]["inputs"]["model"])
        width, height = sample["width"] or base.default_size[0], sample["height"] or base.default_size[1]
        assert read_video(path) == (sample["frames"] or base.default_frames, width, height)
    for node_id in (k for k, v in prompt.items() if v["class_type"] == "PreviewImage"):
        assert outputs[node_id]["images"]
        for image in outputs[node_id]["images"]:
            query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
            assert host.request("GET", f"/view?{query}")[0] == 200


def base_folder(host, choice: str) -> str:
    folder = os.path.join(host.dirs["diffusers"], choice)
    return folder if os.path.isdir(folder) else os.path.dirname(TOY_MODEL)  # else: the bundled one


def loaded_base(host, choice: str):
    """The base a Load T2V Base choice names, loaded here to read its recipe's defaults."""
    from cav_core import load_base

    return load_base(base_folder(host, choice))


def write_loaded_files(host, prompt: dict) -> None:
    """The files the prompt's Load Motion LoRA nodes read, made for the prompt's base."""
    choice = next(v["inputs"]["model"] for v in prompt.values() if v["class_type"] == "CAV_LoadBase")
    for seed, node in enumerate(v for v in prompt.values() if v["class_type"] == "CAV_LoadMotionLora"):
        path = os.path.join(host.dirs["loras"], node["inputs"]["lora_name"])
        write_motion_lora(base_folder(host, choice), path, seed)


@pytest.mark.parametrize("path", [*WORKFLOWS, OLD_WORKFLOW, OLD_STACK_WORKFLOW],
                         ids=lambda p: os.path.splitext(os.path.basename(p))[0])
def test_shipped_workflow_runs(host, path):
    prompt = shipped_prompt(host, path)
    write_loaded_files(host, prompt)
    entry = host.run(prompt)
    assert_success(host, entry)
    check_outputs(host, prompt, entry)
    for node in prompt.values():  # a training node asked to save wrote its file to the yaml folder
        if node["class_type"] in MOTION_TRAINERS and node["inputs"]["save"]:
            assert any(f.startswith(node["inputs"]["name"]) for f in os.listdir(host.dirs["loras"]))


def test_the_old_workflow_trains_with_its_saved_settings(host):
    """Its deprecated motion node still trains what the saved values say (rank 16, convolutions on)."""
    prompt = shipped_prompt(host, OLD_WORKFLOW)
    trainer = next(k for k, v in prompt.items() if v["class_type"] == "CAV_TrainMotionLora")
    inputs = prompt[trainer]["inputs"]
    assert (inputs["rank"], inputs["include_temporal_convs"], inputs["absorber_token_in_prompt"]) == (16, True, False)
    inputs["seed"] = 1  # not the cached run of test_shipped_workflow_runs: this one must execute
    entry = host.run(prompt)
    assert_success(host, entry)
    text = entry["outputs"][trainer]["text"][0]
    assert "rank 16" in text and "temporal convs" in text and "absorber token out" in text


def test_changing_only_the_sampler_reuses_the_trained_lora(host):
    path = os.path.join(ROOT, "workflows", "one_shot_motion_transfer.json")
    prompt = shipped_prompt(host, path)
    assert_success(host, host.run(prompt))
    saved_before = sorted(os.listdir(host.dirs["loras"]))
    sample = next(k for k, v in prompt.items() if v["class_type"] == "CAV_SampleVideo")
    prompt[sample]["inputs"].update(seed=prompt[sample]["inputs"]["seed"] + 1, cfg=5.0, scheduler="dpm++")
    entry = host.run(prompt)
    assert_success(host, entry)
    cached = set(messages(entry, "execution_cached")[0]["nodes"])
    trainers = {k for k, v in prompt.items() if v["class_type"].startswith("CAV_Train")}
    assert trainers and trainers <= cached, "training ran again"
    assert sample not in cached
    assert sorted(os.listdir(host.dirs["loras"])) == saved_before  # nothing retrained, nothing re-saved
