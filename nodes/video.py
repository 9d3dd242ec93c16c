"""Load Reference Video: the one clip whose motion is learned (file, IMAGE batch or VIDEO)."""
from __future__ import annotations

import os

from comfy_api.latest import InputImpl, io, ui

from cav_core.errors import CavError
from cav_core.video_io import SUPPORTED_EXTENSIONS, VideoOptions, frames_from_array, read_video

from .constants import NODE_IDS
from . import folders, host, types
from .convert import frames_to_image_batch, image_batch_to_frames


def video_options(max_frames: int, skip_first: int, every_nth: int, target_fps: float,
                  width: int, height: int, base=None) -> VideoOptions:
    """The node's widgets as the engine's frame-selection options. 0 means the connected base's
    recipe (``base``, a cav_core BaseModel), or without a base: all frames, the source size."""
    if (width == 0) != (height == 0):
        raise CavError(f"set both width and height, or both to 0 for the base's size (or the source's without "
                       f"a base) (got {width}x{height})")
    size = (width, height) if width else (base.default_size if base is not None else None)
    frames = max_frames or (base.default_frames if base is not None else 0)
    return VideoOptions(max_frames=frames, skip_first=skip_first, every_nth=every_nth,
                        target_fps=target_fps, size=size)


def read_video_input(video, options: VideoOptions):
    """A core VIDEO: streamed from its file when it is one we read (stops at the frame cap),
    else from its decoded frames."""
    if isinstance(video, InputImpl.VideoFromFile):
        source = video.get_stream_source()
        if isinstance(source, str) and os.path.isfile(source) and source.lower().endswith(SUPPORTED_EXTENSIONS):
            return read_video(source, options)
    components = video.get_components()
    return frames_from_array(components.images, float(components.frame_rate), options, "VIDEO input")


class LoadReferenceVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["load_reference"],
            display_name=types.display_name("Load Reference Video"),
            category=types.CATEGORY,
            description="The reference clip whose motion is learned. Pick a bundled clip or upload one; "
                        "a connected IMAGE batch (VHS Load Video, Get Video Components) or VIDEO is used "
                        "instead of the file. Frames are selected in order: skip, fps, every Nth, cap.",
            inputs=[
                io.Combo.Input("video", options=folders.reference_choices(), upload=io.UploadType.video,
                               tooltip="A clip in ComfyUI's input folder (upload with the button) or one of "
                                       "the clips bundled with the pack. Ignored when images or "
                                       "video_input is connected."),
                io.Int.Input("max_frames", default=0, min=0, max=4096,
                             tooltip="Keep at most this many frames. 0 = the connected base's frame count (its "
                                     "recipe), or all frames without a base. Decoding stops at the cap."),
                io.Int.Input("skip_first", default=0, min=0, max=100000,
                             tooltip="Drop this many frames at the start of the source."),
                io.Int.Input("every_nth", default=1, min=1, max=1000,
                             tooltip="Keep every Nth frame (after skipping and fps resampling)."),
                io.Float.Input("target_fps", default=0.0, min=0.0, max=240.0, step=0.5,
                               tooltip="Resample to this frame rate first (0 = keep the source rate; never "
                                       "raises the rate)."),
                io.Int.Input("width", default=0, min=0, max=4096, step=8,
                             tooltip="Resize and centre-crop to this width. 0 with height 0 = the connected "
                                     "base's size (its recipe), or the source size without a base."),
                io.Int.Input("height", default=0, min=0, max=4096, step=8,
                             tooltip="Resize and centre-crop to this height (0 with width 0: see width)."),
                io.Image.Input("images", optional=True,
                               tooltip="Optional frames from another node (VHS Load Video, Get Video "
                                       "Components); used instead of the file when connected."),
                io.Float.Input("images_fps", default=8.0, min=0.01, max=240.0, step=0.01, optional=True,
                               tooltip="Frame rate of the connected images (an IMAGE batch carries none)."),
                io.Video.Input("video_input", optional=True,
                               tooltip="Optional core VIDEO (Load Video, Create Video); used instead of the "
                                       "file when connected, and before images."),
                types.T2VBase.Input("base", optional=True,
                                    tooltip="The base the clip will train: its recipe gives the frame count and "
                                            "size wherever max_frames, width and height are 0."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The selected frames, in order."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the selected frames."),
                io.Int.Output(display_name="frame_count", tooltip="How many frames were selected."),
            ],
        )

    @classmethod
    def validate_inputs(cls, video: str) -> bool | str:
        # Naming 'video' here skips ComfyUI's "value in list" check (uploads and annotated names
        # such as "clip.mp4 [output]" are allowed), so the path check is ours.
        if video is None:  # linked: checked at execution
            return True
        try:
            folders.resolve_reference(video)
        except CavError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, video: str, **_) -> str:
        """Re-run when the file changes on disk (a new upload with the same name)."""
        return folders.file_fingerprint(folders.resolve_reference, video)

    @classmethod
    def execute(cls, video: str, max_frames: int, skip_first: int, every_nth: int, target_fps: float,
                width: int, height: int, images=None, images_fps: float = 8.0,
                video_input=None, base=None) -> io.NodeOutput:
        with host.engine_call():
            options = video_options(max_frames, skip_first, every_nth, target_fps, width, height,
                                    base.base if base is not None else None)
            if video_input is not None:
                clip = read_video_input(video_input, options)
            elif images is not None:
                clip = frames_from_array(image_batch_to_frames(images, "images"), images_fps, options, "images input")
            else:
                clip = read_video(folders.resolve_reference(video), options)
        frames = frames_to_image_batch(clip.frames, host.intermediate_device())
        h, w = clip.frames.shape[1:3]
        text = f"{len(clip.frames)} frames, {w}x{h}, {clip.fps:g} fps from {os.path.basename(clip.source)}"
        return io.NodeOutput(frames, float(clip.fps), len(clip.frames), ui=ui.PreviewText(text))

