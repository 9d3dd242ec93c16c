"""Interop with Video Helper Suite, the video pack most ComfyUI users load and save video with.

VHS Load Video's IMAGE batch feeds Load Reference Video; Sample Video's frames and fps feed VHS
Video Combine (GIF, and H.264 MP4 when VHS found an ffmpeg). Needs the host and
CAV_HOST_TEST_VHS=/path/to/ComfyUI-VideoHelperSuite (its requirements installed: opencv,
imageio-ffmpeg); otherwise skipped with that reason.
"""
from __future__ import annotations

import os
import shutil

import pytest

from .host_client import ROOT, assert_success, base_choice, read_video
from tools.comfyui.ui_to_api import WIDGET_TYPES

REFERENCE = os.path.join(ROOT, "cav_core", "shapes_world", "references", "zigzag.mp4")
FRAMES, SIZE = 8, 32  # small, so the run stays short; the check is the plumbing, not the quality


def _node(host, class_type: str, **inputs) -> dict:
    """An API-format node: the given inputs, every other required input at its schema default."""
    required = host.object_info[class_type]["input"]["required"]
    for name, spec in required.items():
        if name in inputs:
            continue
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list):
            inputs[name] = options.get("default", kind[0] if kind else None)
        elif kind in WIDGET_TYPES:
            inputs[name] = options.get("default", options.get("options", [None])[0] if kind == "COMBO" else None)
    return {"class_type": class_type, "inputs": inputs}


@pytest.fixture(scope="module")
def vhs(host):
    if "VHS_LoadVideo" not in host.object_info:
        pytest.skip("Video Helper Suite is not installed in the test host "
                    "(set CAV_HOST_TEST_VHS=/path/to/ComfyUI-VideoHelperSuite)")
    shutil.copy(REFERENCE, os.path.join(host.dirs["input"], "cav_vhs_reference.mp4"))
    host.refresh_object_info()  # VHS lists the input folder's videos in its schema
    return host


def test_vhs_load_video_feeds_training_and_video_combine_saves_the_sample(vhs):
    base = base_choice()
    if base is None:
        pytest.skip("the bundled shapes-world model is not in this checkout; set CAV_HOST_TEST_BASE=tiny")
    formats = vhs.object_info["VHS_VideoCombine"]["input"]["required"]["format"][0]
    wanted = ["image/gif"] + (["video/h264-mp4"] if "video/h264-mp4" in formats else [])
    load_base = _node(vhs, "CAV_LoadBase", **({"model": base} if base else {}))
    prompt = {
        "1": _node(vhs, "VHS_LoadVideo", video="cav_vhs_reference.mp4", frame_load_cap=FRAMES,
                   custom_width=SIZE, custom_height=SIZE),
        "2": load_base,
        # VHS gives no fps with the frames; its frame rate output is not an IMAGE batch property.
        "3": _node(vhs, "CAV_LoadReferenceVideo", images=["1", 0], images_fps=8.0),
        "4": _node(vhs, "CAV_TrainMotion", base=["2", 0], reference=["3", 0], steps=2, preview_every=0,
                   prompt="a red square moving on a white background"),
        "5": _node(vhs, "CAV_MotionLoraStack", motion_lora_1=["4", 0]),
        "6": _node(vhs, "CAV_SampleVideo", base=["2", 0], motion_loras=["5", 0], steps=2, frames=FRAMES,
                   width=SIZE, height=SIZE, prompt="a blue circle moving on a black background"),
    }
    for i, fmt in enumerate(wanted):
        prompt[str(10 + i)] = _node(vhs, "VHS_VideoCombine", images=["6", 0], frame_rate=["6", 1],
                                    format=fmt, filename_prefix=f"cav_vhs_{i}", save_output=True)
    entry = vhs.run(prompt)
    assert_success(vhs, entry)
    for i, fmt in enumerate(wanted):
        files = entry["outputs"][str(10 + i)]["gifs"]
        assert len(files) == 1 and files[0]["format"] == fmt
        assert files[0]["frame_rate"] == 8.0
        path = os.path.join(vhs.dirs["output"], files[0]["subfolder"], files[0]["filename"])
        assert _frames_of(path) == (FRAMES, SIZE, SIZE), fmt


def _frames_of(path: str) -> tuple[int, int, int]:
    if not path.endswith(".gif"):
        return read_video(path)
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return sum(1 for _ in ImageSequence.Iterator(image)), *image.size
