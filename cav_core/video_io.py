"""Reading and writing short video clips as uint8 RGB frame arrays.

Decoding is streamed: frames are selected, resized and counted one at a time, and reading
stops as soon as ``max_frames`` frames are kept, so a long file never sits in memory.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

# Probing an encoder this build lacks makes FFmpeg print errors; our own message says what to do.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402 (after the FFmpeg log level)
import cv2.utils.logging as cv_logging  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageSequence

from .errors import CavError
from .files import atomic_path

_OPENCV_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".mkv")
_PILLOW_EXTENSIONS = (".gif", ".webp", ".png", ".apng")
_STILL_EXTENSIONS = (".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SUPPORTED_EXTENSIONS = _OPENCV_EXTENSIONS + _PILLOW_EXTENSIONS
WRITABLE_EXTENSIONS = (".mp4", ".webm", ".avi", ".gif", ".webp")

DEFAULT_FPS = 10.0  # used when a file states no frame rate

# Encoders to try per extension, best first.
_FOURCCS = {".mp4": ("avc1", "mp4v"), ".webm": ("VP80",), ".avi": ("MJPG",)}
# Probing a missing encoder makes ffmpeg print errors, so each one is probed once per process.
_UNAVAILABLE_FOURCCS: set[str] = set()


def _parse_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        width = height = size
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        width, height = size
    else:
        raise CavError(f"size must be a side length or (width, height), got {size!r}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise CavError(f"size must be positive whole numbers, got {size!r}")
    return width, height


@dataclass(frozen=True)
class VideoOptions:
    """Which frames to take from a clip, in order: skip, resample to ``target_fps``, every Nth, cap."""

    max_frames: int = 16  # frame cap (0 = no cap); decoding stops at the cap
    skip_first: int = 0  # drop the first N source frames
    every_nth: int = 1  # keep every Nth frame (after skip and fps resampling)
    target_fps: float = 0.0  # 0 = keep the source rate; never raises the rate above the source's
    size: int | tuple[int, int] | None = None  # (width, height) or square side; None = keep
    min_frames: int = 2  # fewer frames than this is an error

    def __post_init__(self) -> None:
        if self.max_frames < 0:
            raise CavError(f"max_frames must be 0 (no cap) or more, got {self.max_frames}")
        if self.skip_first < 0:
            raise CavError(f"skip_first must be 0 or more, got {self.skip_first}")
        if self.every_nth < 1:
            raise CavError(f"every_nth must be 1 or more, got {self.every_nth}")
        if not (self.target_fps >= 0 and math.isfinite(self.target_fps)):
            raise CavError(f"target_fps must be 0 (keep the source rate) or more, got {self.target_fps}")
        if self.min_frames < 1:
            raise CavError(f"min_frames must be 1 or more, got {self.min_frames}")
        if self.max_frames and self.min_frames > self.max_frames:
            raise CavError(
                f"min_frames ({self.min_frames}) is more than max_frames ({self.max_frames}); "
                "raise max_frames or lower min_frames"
            )
        _parse_size(self.size)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The output (width, height), or None to keep the source size."""
        return _parse_size(self.size)


@dataclass
class Video:
    frames: np.ndarray  # uint8 [F, H, W, 3] RGB
    fps: float  # rate of the returned frames (after target_fps / every_nth)
    source: str  # path or description


def read_video(path: str | os.PathLike, options: VideoOptions = VideoOptions()) -> Video:
    """Decode the frames ``options`` selects from a video file or an animated gif/webp/png."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise CavError(f"video file not found: '{path}'; check the path")
    if ext in _STILL_EXTENSIONS:
        raise CavError(f"needs a video, got a single image '{path}'; use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if ext not in SUPPORTED_EXTENSIONS:
        raise CavError(f"unsupported video type '{ext}' for '{path}'; use one of {', '.join(SUPPORTED_EXTENSIONS)}")

    if ext in _OPENCV_EXTENSIONS:
        capture = cv2.VideoCapture(path)
        try:
            if not capture.isOpened():
                raise _unreadable(path)
            fps = capture.get(cv2.CAP_PROP_FPS)
            return _collect(_opencv_frames(capture, path), _valid_fps(fps), options, path)
        finally:
            capture.release()

    try:
        with Image.open(path) as image:
            image.load()  # webp states the frame duration only once a frame is decoded
            fps = 1000.0 / image.info["duration"] if image.info.get("duration") else DEFAULT_FPS
            return _collect(_pillow_frames(image), fps, options, path)
    except OSError as exc:  # includes Pillow's UnidentifiedImageError and truncated-file errors
        raise _unreadable(path, exc) from exc


def frames_from_array(
    array, fps: float = 8.0, options: VideoOptions = VideoOptions(), source: str = "array"
) -> Video:
    """Apply ``options`` to frames already in memory: uint8 or float 0..1 [F, H, W, 3], numpy or torch."""
    array = _as_numpy(array)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise CavError(f"{source}: expected frames shaped [frames, height, width, 3], got {list(array.shape)}")
    if not fps > 0:
        raise CavError(f"{source}: fps must be more than 0, got {fps}")
    _check_dtype(array.dtype)
    # Only the selected frames are converted.
    loaders = ((lambda frame=frame: _to_uint8(frame)) for frame in array)
    return _collect(loaders, float(fps), options, source)


def resize_center_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale [F, H, W, 3] frames to cover width x height keeping aspect, then crop the centre."""
    if frames.ndim != 4:
        raise CavError(f"expected frames shaped [frames, height, width, 3], got {list(frames.shape)}")
    if not len(frames):
        return np.empty((0, height, width, frames.shape[-1]), frames.dtype)
    return np.stack([_fit(frame, width, height) for frame in frames])


def write_video(path: str | os.PathLike, frames, fps: float = 8.0) -> str:
    """Write uint8 or float 0..1 RGB frames [F, H, W, 3] to ``path``, chosen by extension, atomically.

    gif and webp loop forever; their encoders merge identical consecutive frames (timing is kept).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITABLE_EXTENSIONS:
        raise CavError(f"cannot write video type '{ext}' for '{path}'; use one of {', '.join(WRITABLE_EXTENSIONS)}")
    frames = _as_numpy(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise CavError(f"expected at least one frame shaped [frames, height, width, 3], got {list(frames.shape)}")
    if not fps > 0:
        raise CavError(f"fps must be more than 0, got {fps}")
    frames = _to_uint8(frames)
    with atomic_path(path) as tmp:
        if ext in _FOURCCS:
            _write_opencv(tmp, frames, fps, ext)
        else:
            _write_pillow(tmp, frames, fps, "GIF" if ext == ".gif" else "WEBP")
    return path


def _collect(
    loaders: Iterable[Callable[[], np.ndarray]], source_fps: float, options: VideoOptions, source: str
) -> Video:
    """Keep the frames ``options`` selects from a stream of per-frame loaders, loading only those.

    Output frame m is source frame ``skip_first + round(m * stride)``, where the stride folds
    fps resampling and ``every_nth`` together; iteration stops once ``max_frames`` are kept.
    """
    resample = source_fps / options.target_fps if 0 < options.target_fps < source_fps else 1.0
    stride = resample * options.every_nth
    size = options.frame_size
    kept: list[np.ndarray] = []
    wanted = options.skip_first
    total = 0
    for index, load in enumerate(loaders):
        total = index + 1
        if index != wanted:
            continue
        frame = load()
        kept.append(_fit(frame, *size) if size else frame)
        if len(kept) == options.max_frames:
            break
        wanted = options.skip_first + math.floor(len(kept) * stride + 0.5)
    else:  # the whole source was read
        if total == 0:
            raise _unreadable(source)
        if total == 1:
            raise CavError(f"needs a video, got a single image '{source}'; use a clip with several frames")
        if len(kept) < options.min_frames:
            raise CavError(
                f"only {len(kept)} frame(s) selected from '{source}' ({total} in the source) with "
                f"skip_first={options.skip_first}, every_nth={options.every_nth}, target_fps={options.target_fps:g}; "
                f"need at least {options.min_frames}: lower skip_first or every_nth, raise target_fps, "
                "or use a longer clip"
            )
    return Video(frames=np.stack(kept), fps=source_fps / stride, source=source)


def _opencv_frames(capture: cv2.VideoCapture, path: str) -> Iterator[Callable[[], np.ndarray]]:
    # grab() only advances; the costlier retrieve() (pixel conversion) runs for kept frames.
    def retrieve() -> np.ndarray:
        ok, frame = capture.retrieve()
        if not ok:
            raise _unreadable(path)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    while capture.grab():
        yield retrieve


def _pillow_frames(image: Image.Image) -> Iterator[Callable[[], np.ndarray]]:
    for frame in ImageSequence.Iterator(image):
        yield lambda frame=frame: np.asarray(frame.convert("RGB"))


def _write_opencv(path: str, frames: np.ndarray, fps: float, ext: str) -> None:
    height, width = frames.shape[1:3]
    for fourcc in _FOURCCS[ext]:
        if fourcc in _UNAVAILABLE_FOURCCS:
            continue
        level = cv_logging.getLogLevel()
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)
        try:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
        finally:
            cv_logging.setLogLevel(level)
        if writer.isOpened():
            break
        writer.release()
        _UNAVAILABLE_FOURCCS.add(fourcc)
    else:
        raise CavError(
            f"this OpenCV build cannot encode {ext} ({'/'.join(_FOURCCS[ext])}); save as .mp4, .gif or .webp instead"
        )
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_pillow(path: str, frames: np.ndarray, fps: float, fmt: str) -> None:
    first, *rest = (Image.fromarray(frame) for frame in frames)
    first.save(path, format=fmt, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)


def _fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    x, y = (new_w - width) // 2, (new_h - height) // 2
    return np.ascontiguousarray(resized[y : y + height, x : x + width])


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor, e.g. a ComfyUI IMAGE batch
        tensor = array.detach().cpu()
        array = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return np.asarray(array)


def _check_dtype(dtype: np.dtype) -> None:
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise CavError(f"expected uint8 frames or floats in 0..1, got {dtype}")


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    _check_dtype(frames.dtype)
    if frames.dtype == np.uint8:
        return frames
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _valid_fps(fps: float) -> float:
    return fps if fps > 0 and math.isfinite(fps) else DEFAULT_FPS


def _unreadable(source: str, cause: Exception | None = None) -> CavError:
    detail = f" ({cause})" if cause else ""
    return CavError(
        f"cannot decode any frames from '{source}'{detail}: the file is corrupt, empty or in an unsupported codec; "
        "re-export it as .mp4 or .gif"
    )
