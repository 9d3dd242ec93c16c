"""Bad inputs come back as node errors and an interrupt leaves nothing behind; the server keeps serving.

These run on the tiny random-init base in the yaml's diffusers folder, so they need no model
download.
"""
from __future__ import annotations

import os

import pytest
import torch

from .host_client import TINY_BASE, assert_success, messages


def base(model: str = TINY_BASE) -> dict:
    return {"class_type": "CAV_LoadBase", "inputs": {"model": model, "precision": "auto"}}


def reference(video: str = "zigzag.mp4 [bundled]") -> dict:
    return {"class_type": "CAV_LoadReferenceVideo",
            "inputs": {"video": video, "max_frames": 8, "skip_first": 0, "every_nth": 1, "target_fps": 0.0,
                       "width": 16, "height": 16}}


def train_motion(name: str, steps: int, save: bool = True, preview_every: int = 0) -> dict:
    return {"class_type": "CAV_TrainMotion",
            "inputs": {"base": ["1", 0], "reference": ["2", 0], "prompt": "a red square moving", "steps": steps,
                       "lr": 1e-3, "rank": 2, "seed": 0, "name": name, "save": save, "preview_every": preview_every,
                       "loss": "mse", "include_transformer_in": "on", "include_feed_forward": "off",
                       "include_temporal_convs": "off"}}


def sample(**links) -> dict:
    inputs = {"base": ["1", 0], "prompt": "a square", "negative": "", "seed": 0, "steps": 1, "cfg": 5.0,
              "frames": 4, "width": 16, "height": 16, "scheduler": "ddim", "fps": 8.0, "noise_prior": 0.0}
    return {"class_type": "CAV_SampleVideo", "inputs": {**inputs, **links}}


def preview(source: str, slot: int = 0) -> dict:
    return {"class_type": "PreviewImage", "inputs": {"images": [source, slot]}}


def assert_node_error(host, prompt: dict, node_id: str, *words: str) -> None:
    status, body = host.queue(prompt)
    assert status == 400, body
    errors = body["node_errors"][node_id]["errors"]
    text = " ".join(f"{e['message']} {e.get('details', '')}" for e in errors)
    assert all(w in text for w in words), text
    assert host.request("GET", "/system_stats")[0] == 200


def test_missing_video_is_a_node_error(host):
    assert_node_error(host, {"2": reference("no_such_clip.mp4"), "9": preview("2")}, "2", "not found")


@pytest.mark.parametrize("video,word", [("../../../../etc/passwd", "outside"), ("../comfyui.log [output]", "outside"),
                                        ("/etc/hostname", "absolute")])
def test_escaping_video_names_are_node_errors(host, video, word):
    assert_node_error(host, {"2": reference(video), "9": preview("2")}, "2", word)


def test_escaping_lora_and_base_names_are_node_errors(host):
    prompt = {"1": base(), "3": {"class_type": "CAV_LoadMotionLora",
                                 "inputs": {"lora_name": "../../../etc/passwd", "strength": 1.0}},
              "4": sample(motion_loras=["3", 0]), "9": preview("4")}
    assert_node_error(host, prompt, "3", "lora_name")
    assert_node_error(host, {"1": base("../../../../tmp"), "4": sample(), "9": preview("4")}, "1", "model")


def test_lora_from_another_base_is_a_node_error(host):
    from cav_core.adapter_file import AdapterFile, save_adapter_file
    from cav_core.adapters import TEMPORAL, LoraWeights

    target = "down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.to_q"
    lora = LoraWeights(TEMPORAL, 2, 2.0, {f"{target}.lora_A.weight": torch.zeros(2, 320),
                                          f"{target}.lora_B.weight": torch.zeros(320, 2)})
    save_adapter_file(os.path.join(host.dirs["loras"], "other_base.safetensors"),
                      AdapterFile(base_name="text-to-video-ms-1.7b", base_fingerprint="0123456789abcdef",
                                  temporal=lora))
    prompt = {"1": base(), "3": {"class_type": "CAV_LoadMotionLora",
                                 "inputs": {"lora_name": "other_base.safetensors", "strength": 1.0}},
              "4": sample(motion_loras=["3", 0]), "9": preview("4")}
    entry = host.run(prompt)
    assert entry["status"]["status_str"] == "error"
    (error,) = messages(entry, "execution_error")
    assert error["node_id"] == "4"
    assert "trained on base 'text-to-video-ms-1.7b'" in error["exception_message"]
    assert host.request("GET", "/system_stats")[0] == 200


def test_saved_names_are_sanitized_into_the_lora_folder(host):
    prompt = {"1": base(), "2": reference(), "3": train_motion("../../escape/../evil", steps=1), "9": preview("3", 1)}
    assert_success(host, host.run(prompt))
    folder = host.dirs["loras"]
    assert "evil.safetensors" in os.listdir(folder)
    parent = os.path.dirname(folder)
    assert not [f for f in os.listdir(parent) if "evil" in f or "escape" in f]
    assert not os.path.exists(os.path.join(os.path.dirname(parent), "escape"))


def test_interrupt_during_training_leaves_nothing_and_the_graph_runs_again(host):
    events = host.listen()
    prompt = {"1": base(), "2": reference(), "9": preview("3", 1),
              "3": train_motion("interrupted_run", steps=20000, preview_every=1)}
    prompt_id = host.queue_ok(prompt)
    events.wait_for(lambda m: m["type"] == "cav.loss" and m["data"]["node"] == "3" and m["data"]["step"] >= 3)
    events.wait_for(lambda m: m["type"] == "progress" and m["data"]["node"] == "3" and m["data"]["value"] >= 3)
    assert 1 in events.binary_events  # preview frames of the current result reached the browser
    assert host.request("POST", "/interrupt", {"prompt_id": prompt_id})[0] == 200
    entry = host.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert messages(entry, "execution_interrupted") and not messages(entry, "execution_error")
    leftovers = [f for f in os.listdir(host.dirs["loras"]) if "interrupted_run" in f or ".partial" in f]
    assert leftovers == []
    assert host.request("GET", "/system_stats")[0] == 200
    prompt["3"]["inputs"]["steps"] = 2  # same graph, short: the cached base was left clean
    assert_success(host, host.run(prompt))
    assert "interrupted_run.safetensors" in os.listdir(host.dirs["loras"])
