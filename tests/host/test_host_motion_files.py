"""Motion-LoRA files through the real server: two clips → save → merge → stack → sample, keeping
training a saved file, a MotionDirector LoRA in the loader, and the bad inputs that used to pass.

On the tiny random-init base in the yaml's diffusers folder (no model download).
"""
from __future__ import annotations

import os

import torch

from .host_client import TINY_BASE, assert_success
from .test_host_errors import base, preview, reference, sample

MOTION = {"lr": 1e-3, "rank": 2, "seed": 0, "save": True, "preview_every": 0, "loss": "mse",
          "include_transformer_in": "on", "include_feed_forward": "off", "include_temporal_convs": "off",
          "absorber_token_in_prompt": "auto"}


def train(name: str, prompt: str, **links) -> dict:
    return {"class_type": "CAV_TrainMotion", "inputs": {"base": ["1", 0], "reference": ["2", 0], "prompt": prompt,
                                                          "steps": 2, "name": name, **MOTION, **links}}


def test_two_clips_save_merge_stack_sample(host):
    other = reference("figure_eight.mp4 [bundled]")
    other["inputs"].update(width=32, height=16, max_frames=5)
    prompt = {
        "1": base(), "2": reference(), "3": other,
        "4": {"class_type": "CAV_AddTrainingClip", "inputs": {"frames": ["3", 0], "caption": "a blue circle moving"}},
        "5": train("host_two_clips", "a red square moving", more_clips=["4", 0], validate_every=1,
                   validation_prompts="a green square moving"),
        "6": train("host_one_clip", "a red square moving", seed=1),
        "7": {"class_type": "CAV_MotionLoraStack", "inputs": {"motion_lora_1": ["5", 0], "strength_1": 0.7,
                                                              "motion_lora_2": ["6", 0], "strength_2": 0.3,
                                                              "strength_3": 1.0}},
        "8": {"class_type": "CAV_MergeMotionLoras", "inputs": {"stack": ["7", 0], "name": "host_merged",
                                                               "max_rank": 0, "save": True}},
        "9": {"class_type": "CAV_LoadMotionLora", "inputs": {"lora_name": "host_merged.safetensors", "strength": 1.0}},
        "10": sample(motion_loras=["9", 0]), "11": preview("10"),
    }
    del prompt["9"], prompt["10"], prompt["11"]  # the merged file is listed only after it is written
    entry = host.run(prompt)
    assert_success(host, entry)
    files = os.listdir(host.dirs["loras"])
    assert {"host_two_clips.safetensors", "host_two_clips.webp", "host_one_clip.safetensors",
            "host_one_clip.webp", "host_merged.safetensors", "host_merged.webp"} <= set(files)  # each with its preview
    assert entry["outputs"]["5"]["animated"] == [True]  # the validation sample, animated on the node
    from cav_core import load_adapter_file

    merged = load_adapter_file(os.path.join(host.dirs["loras"], "host_merged.safetensors"))
    assert [s["weight"] for s in merged.training["merged_from"]] == [0.7, 0.3]
    two = load_adapter_file(os.path.join(host.dirs["loras"], "host_two_clips.safetensors"))
    assert [c["caption"] for c in two.training["clips"]] == ["a red square moving", "a blue circle moving"]
    again = {"1": base(), "2": reference(),
             "9": {"class_type": "CAV_LoadMotionLora", "inputs": {"lora_name": "host_merged.safetensors",
                                                                  "strength": 1.0}},
             "10": sample(motion_loras=["9", 0]), "11": preview("10"),
             # keep training the saved two-clip file, with its own absorber and rank
             "12": {"class_type": "CAV_LoadMotionLora", "inputs": {"lora_name": "host_two_clips.safetensors",
                                                                   "strength": 1.0}},
             "13": train("host_continued", "a red square moving", init_lora=["12", 1], rank=0),
             "14": preview("13", 1)}
    assert_success(host, host.run(again))
    continued = load_adapter_file(os.path.join(host.dirs["loras"], "host_continued.safetensors"))
    assert continued.training["total_steps"] == 4 and continued.training["continued_from"]["file"] == "host_two_clips"


def test_a_motiondirector_lora_loads_converted_for_the_connected_base(host):
    from cav_core import load_base, motiondirector_targets

    tiny = load_base(os.path.join(host.dirs["diffusers"], TINY_BASE))
    modules = dict(tiny.unet.named_modules())
    g = torch.Generator().manual_seed(0)
    tensors = []
    for name in motiondirector_targets(tiny.unet):  # its .pt: [up_0, down_0, up_1, down_1, ...]
        layer = modules[name]
        tensors += [torch.randn(layer.out_features, 2, generator=g), torch.randn(2, layer.in_features, generator=g)]
    torch.save(tensors, os.path.join(host.dirs["loras"], "host_md.pt"))
    loader = {"class_type": "CAV_LoadMotionLora", "inputs": {"lora_name": "host_md.pt", "strength": 0.8,
                                                             "base": ["1", 0]}}
    host.refresh_object_info()
    assert "host_md.pt" in host.object_info["CAV_LoadMotionLora"]["input"]["required"]["lora_name"][1]["options"]
    assert_success(host, host.run({"1": base(), "3": loader, "4": sample(motion_loras=["3", 0]), "9": preview("4")}))


def test_nan_strength_and_an_overlong_name_are_refused(host):
    nan = {"1": base(), "2": reference(), "3": train("host_nan", "a red square moving", save=False),
           "4": {"class_type": "CAV_MotionLoraStack", "inputs": {"motion_lora_1": ["3", 0], "strength_1": float("nan"),
                                                                 "strength_2": 1.0, "strength_3": 1.0}},
           "5": sample(motion_loras=["4", 0]), "9": preview("5")}
    entry = host.run(nan)
    assert entry["status"]["status_str"] == "error"
    assert "finite number" in str(entry["status"]["messages"])
    long_name = {"1": base(), "2": reference(), "3": train("x" * 300, "a red square moving"), "9": preview("3", 1)}
    entry = host.run(long_name)
    assert entry["status"]["status_str"] == "error" and "too long" in str(entry["status"]["messages"])
    assert not [f for f in os.listdir(host.dirs["loras"]) if f.startswith("xxxx") or ".partial" in f]
    assert host.request("GET", "/system_stats")[0] == 200
