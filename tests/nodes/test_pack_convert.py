"""IMAGE batches <-> engine frames, loss graphs and previews (no ComfyUI needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cav_core.errors import CavError


@pytest.fixture()
def convert(pack):
    from cav_pack.nodes import convert

    return convert


def test_frames_round_trip_exactly_through_an_image_batch(convert, clip_frames):
    batch = convert.frames_to_image_batch(clip_frames)
    assert batch.dtype == torch.float32 and batch.shape == (6, 16, 16, 3) and 0 <= batch.min() <= batch.max() <= 1
    assert np.array_equal(convert.image_batch_to_frames(batch), clip_frames)


def test_image_batch_alpha_is_dropped_and_inference_tensors_are_read(convert):
    with torch.inference_mode():
        rgba = torch.rand(3, 8, 8, 4)
    frames = convert.image_batch_to_frames(rgba)
    assert frames.shape == (3, 8, 8, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("bad", [torch.rand(8, 8, 3), torch.rand(2, 8, 8, 2), torch.rand(0, 8, 8, 3), "x"])
def test_bad_image_batches_are_refused(convert, bad):
    with pytest.raises(CavError, match="reference"):
        convert.image_batch_to_frames(bad, "reference")


def test_float_frames_are_clipped(convert):
    batch = convert.frames_to_image_batch(np.array([[[[-0.5, 0.5, 1.5]]]], np.float64))
    assert batch.tolist() == [[[[0.0, 0.5, 1.0]]]]


def test_loss_graph_is_one_image(convert):
    graph = convert.loss_graph({"motion": [1.0, 0.5, 0.25]})
    assert graph.shape == (1, 256, 512, 3)
    assert convert.loss_graph({"motion": [0.3]}).shape == (1, 256, 512, 3)  # one value: no division by zero


def test_preview_picture_is_enlarged_for_small_bases(convert):
    assert convert.preview_picture(np.zeros((64, 64, 3), np.uint8)).size == (256, 256)
    assert convert.preview_picture(np.zeros((256, 320, 3), np.uint8)).size == (320, 256)
