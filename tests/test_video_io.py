import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cav_core import video_io
from cav_core.errors import CavError
from cav_core.video_io import (
    SUPPORTED_EXTENSIONS,
    Video,
    VideoOptions,
    frames_from_array,
    read_video,
    resize_center_crop,
    write_video,
)

ALL = VideoOptions(max_frames=0)


def moving_square(count=12, height=48, width=64):
    """Dark background with a bright square moving right one step per frame."""
    frames = np.full((count, height, width, 3), (20, 30, 40), np.uint8)
    for i in range(count):
        frames[i, 12:28, 2 * i : 2 * i + 16] = (230, 40, 60)
    return frames


def indexed(count=20, height=32, width=32):
    """Frame i is a flat grey of level 10 * i + 5, so a decoded frame tells its source index."""
    levels = 10 * np.arange(count, dtype=np.uint8) + 5
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def indices_of(video: Video) -> list[int]:
    return [round((frame.mean() - 5) / 10) for frame in video.frames]


def stripes(height=48, width=64):
    """Vertical thirds of a 64-wide frame: red 0-15, green 16-47, blue 48-63."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, :16] = (255, 0, 0)
    frame[:, 16:48] = (0, 255, 0)
    frame[:, 48:] = (0, 0, 255)
    return frame


def listing(folder):
    return sorted(os.listdir(folder))


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext, tolerance",
    [(".mp4", 6.0), (".avi", 6.0), (".webm", 6.0), (".gif", 0.0), (".webp", 6.0)],
)
def test_round_trip(tmp_path, ext, tolerance):
    frames = moving_square(12)
    path = str(tmp_path / f"clip{ext}")

    assert write_video(path, frames, fps=20) == path
    video = read_video(path, ALL)

    assert video.frames.dtype == np.uint8
    assert video.frames.shape == frames.shape
    assert video.fps == pytest.approx(20, rel=0.01)
    assert video.source == path
    error = np.abs(video.frames.astype(float) - frames).mean(axis=(1, 2, 3))
    assert error.max() <= tolerance
    mean_colours = video.frames.reshape(12, -1, 3).mean(axis=1)
    assert np.abs(mean_colours - frames.reshape(12, -1, 3).mean(axis=1)).max() <= max(tolerance, 0.5)
    assert listing(tmp_path) == [f"clip{ext}"]  # no temporary left beside it


def test_write_accepts_float_frames_and_gif_timing(tmp_path):
    frames = moving_square(8).astype(np.float32) / 255
    video = read_video(write_video(tmp_path / "clip.gif", frames, fps=8), ALL)

    np.testing.assert_array_equal(video.frames, moving_square(8))
    assert video.fps == pytest.approx(8, rel=0.05)  # gif stores durations in 1/100 s


def test_animated_png_is_read(tmp_path):
    first, *rest = (Image.fromarray(frame) for frame in moving_square(6))
    first.save(tmp_path / "clip.png", save_all=True, append_images=rest, duration=100)

    video = read_video(tmp_path / "clip.png", ALL)

    np.testing.assert_array_equal(video.frames, moving_square(6))
    assert video.fps == pytest.approx(10)


# --- frame selection -----------------------------------------------------------------------------


@pytest.fixture(params=[".gif", ".avi"])
def clip20(request, tmp_path):
    """A 20-frame, 20 fps indexed clip, through both the Pillow and the opencv readers."""
    return write_video(tmp_path / f"indexed{request.param}", indexed(20), fps=20)


@pytest.mark.parametrize(
    "options, expected, fps",
    [
        (VideoOptions(max_frames=5), [0, 1, 2, 3, 4], 20),
        (VideoOptions(max_frames=4, skip_first=3), [3, 4, 5, 6], 20),
        (VideoOptions(max_frames=0, every_nth=3), [0, 3, 6, 9, 12, 15, 18], 20 / 3),
        (VideoOptions(max_frames=0, target_fps=10), list(range(0, 20, 2)), 10),
        (VideoOptions(max_frames=3, skip_first=1, target_fps=10, every_nth=2), [1, 5, 9], 5),
        (VideoOptions(max_frames=4, target_fps=60), [0, 1, 2, 3], 20),  # never upsampled
    ],
)
def test_selection(clip20, options, expected, fps):
    video = read_video(clip20, options)

    assert indices_of(video) == expected
    assert video.fps == pytest.approx(fps)


def test_default_options_cap_at_16(clip20):
    assert len(read_video(clip20).frames) == 16


def test_decoding_stops_at_the_cap(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.avi", indexed(200, 16, 16), fps=25)
    calls = {"grab": 0, "read": 0, "retrieve": 0}
    real_capture = cv2.VideoCapture

    class CountingCapture:
        def __init__(self, *args):
            self._capture = real_capture(*args)

        def __getattr__(self, name):
            attribute = getattr(self._capture, name)
            if name not in calls:
                return attribute

            def counted(*args):
                calls[name] += 1
                return attribute(*args)

            return counted

    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)

    video = read_video(path, VideoOptions(max_frames=8))
    assert indices_of(video) == list(range(8))
    assert calls["grab"] + calls["read"] <= 9
    assert calls["retrieve"] + calls["read"] == 8

    calls.update(grab=0, read=0, retrieve=0)
    video = read_video(path, VideoOptions(max_frames=8, every_nth=2))
    assert indices_of(video) == list(range(0, 16, 2))
    assert calls["grab"] + calls["read"] <= 16
    assert calls["retrieve"] + calls["read"] == 8  # skipped frames are only grabbed


# --- resizing ------------------------------------------------------------------------------------


def test_resize_to_square_crops_the_sides():
    out = resize_center_crop(np.stack([stripes()] * 2), 32, 32)

    assert out.shape == (2, 32, 32, 3)
    row = out[0, 16]
    assert tuple(row[0]) == (255, 0, 0) and tuple(row[-1]) == (0, 0, 255)
    # 64x48 scales by 2/3 to 43x32: the 32-wide green third becomes ~21 columns, not stretched.
    green = np.sum((row[:, 1] > 200) & (row[:, 0] < 50))
    assert abs(green - 21) <= 1


def test_resize_to_wide_crops_top_and_bottom():
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16], frame[16:32], frame[32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)

    out = resize_center_crop(frame[None], 32, 8)  # scale 1/2 to 32x24, keep rows 8..15

    assert out.shape == (1, 8, 32, 3)
    assert np.all(out == (0, 255, 0))


def test_resize_upscales_to_cover():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:8] = 255  # top quarter

    out = resize_center_crop(frame[None], 64, 48)  # scale 2 to 64x64, keep rows 8..55

    assert out.shape == (1, 48, 64, 3)
    # white rows 0..7 become 0..15 (edge blended by linear interpolation), 0..7 after the crop
    assert np.all(out[0, :7] == 255) and np.all(out[0, 9:] == 0)


def test_read_resizes_each_frame(tmp_path):
    frames = np.stack([stripes()] * 4)
    frames[:, 0, 0] = [(0, 0, i) for i in range(4)]  # gif merges identical frames; keep them distinct
    path = write_video(tmp_path / "stripes.gif", frames, fps=10)

    square = read_video(path, VideoOptions(size=32))
    wide = read_video(path, VideoOptions(size=(16, 8)))

    assert square.frames.shape == (4, 32, 32, 3)
    assert wide.frames.shape == (4, 8, 16, 3)
    assert tuple(square.frames[0, 16, 16]) == (0, 255, 0)


# --- arrays --------------------------------------------------------------------------------------


def test_frames_from_float_tensor_clamps_and_rounds():
    tensor = torch.full((4, 8, 8, 3), 0.5)
    tensor[1] = -0.3
    tensor[2] = 1.7
    tensor[3] = 0.2

    video = frames_from_array(tensor, fps=12, options=VideoOptions(size=4))

    assert video.frames.dtype == np.uint8 and video.frames.shape == (4, 4, 4, 3)
    assert [int(frame[0, 0, 0]) for frame in video.frames] == [128, 0, 255, 51]
    assert video.fps == 12 and video.source == "array"


def test_frames_from_uint8_array_applies_selection():
    video = frames_from_array(
        indexed(20), fps=20, options=VideoOptions(skip_first=2, target_fps=10, max_frames=3), source="batch"
    )

    assert indices_of(video) == [2, 4, 6]
    assert video.fps == 10 and video.source == "batch"


def test_frames_from_array_rejects_bad_input():
    with pytest.raises(CavError, match=r"\[frames, height, width, 3\]"):
        frames_from_array(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CavError, match="uint8 frames or floats"):
        frames_from_array(np.zeros((4, 8, 8, 3), np.int64))
    with pytest.raises(CavError, match="needs a video, got a single image"):
        frames_from_array(np.zeros((1, 8, 8, 3), np.uint8))


# --- reading errors ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CavError, match="not found.*check the path"):
        read_video(tmp_path / "nope.mp4")


def test_unsupported_extension_lists_supported(tmp_path):
    (tmp_path / "clip.xyz").write_bytes(b"data")
    with pytest.raises(CavError, match=r"unsupported video type '\.xyz'.*\.mp4.*\.gif"):
        read_video(tmp_path / "clip.xyz")
    assert ".mp4" in SUPPORTED_EXTENSIONS and ".webp" in SUPPORTED_EXTENSIONS


@pytest.mark.parametrize("name", ["still.gif", "still.png", "still.jpg"])
def test_still_image(tmp_path, name):
    Image.fromarray(stripes()).save(tmp_path / name)
    with pytest.raises(CavError, match="needs a video, got a single image"):
        read_video(tmp_path / name)


@pytest.mark.parametrize("name", ["text.mp4", "text.gif", "empty.avi", "empty.webp"])
def test_not_a_video(tmp_path, name):
    (tmp_path / name).write_text("hello" if name.startswith("text") else "")
    with pytest.raises(CavError, match="cannot decode any frames.*corrupt"):
        read_video(tmp_path / name)


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_truncated_file(tmp_path, ext):
    path = tmp_path / f"clip{ext}"
    write_video(path, moving_square(12), fps=10)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CavError, match="cannot decode any frames.*corrupt"):
        read_video(path, ALL)


def test_too_few_frames_after_selection(clip20):
    with pytest.raises(CavError, match=r"only 1 frame.*\(20 in the source\).*skip_first=18.*lower skip_first"):
        read_video(clip20, VideoOptions(skip_first=18, every_nth=2))
    with pytest.raises(CavError, match="only 0 frame.*need at least 2"):
        read_video(clip20, VideoOptions(skip_first=25))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every_nth": 0}, "every_nth must be 1 or more"),
        ({"skip_first": -1}, "skip_first must be 0 or more"),
        ({"max_frames": -2}, "max_frames must be 0"),
        ({"target_fps": -5.0}, "target_fps must be 0"),
        ({"min_frames": 0}, "min_frames must be 1 or more"),
        ({"max_frames": 4, "min_frames": 6}, "raise max_frames or lower min_frames"),
        ({"size": (0, 16)}, "size must be positive"),
        ({"size": (16, 16, 3)}, "side length or \\(width, height\\)"),
    ],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(CavError, match=message):
        VideoOptions(**kwargs)


# --- writing failures ----------------------------------------------------------------------------


def test_write_unsupported_extension_leaves_nothing(tmp_path):
    with pytest.raises(CavError, match=r"cannot write video type '\.mov'.*\.mp4"):
        write_video(tmp_path / "clip.mov", moving_square(4))
    assert listing(tmp_path) == []


def test_failed_pillow_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.gif", moving_square(4))
    before = (tmp_path / "clip.gif").read_bytes()

    def broken_save(image, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"GIF89a partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_video(path, moving_square(6))

    assert listing(tmp_path) == ["clip.gif"]
    assert (tmp_path / "clip.gif").read_bytes() == before


def test_failed_opencv_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_convert(*args):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(cv2, "cvtColor", broken_convert)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_video(tmp_path / "clip.avi", moving_square(4))
    assert listing(tmp_path) == []


def test_missing_encoder_is_a_cav_error(tmp_path, monkeypatch):
    class ClosedWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    monkeypatch.setattr(video_io, "_UNAVAILABLE_FOURCCS", set())
    with pytest.raises(CavError, match=r"cannot encode \.webm.*save as \.mp4"):
        write_video(tmp_path / "clip.webm", moving_square(4))
    assert listing(tmp_path) == []
