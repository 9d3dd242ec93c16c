"""Validation samples on the training node: each shown in the progress preview as it is made, the
last one animated on the node when training ends."""
from __future__ import annotations

import numpy as np
from comfy_api.latest import io, ui

from cav_core.step_loop import Hooks

from .convert import frames_to_image_batch, preview_picture


class ValidationPreviews:
    """Hooks ``hooks.on_validation`` into the progress bar that ``hooks.on_progress`` drives."""

    def __init__(self, hooks: Hooks):
        self.progress = hooks.on_progress  # a host.TrainingProgress
        hooks.on_validation = self.seen

    def seen(self, step: int, prompt: str, frames: np.ndarray) -> None:
        middle = (np.clip(frames[len(frames) // 2], 0, 1) * 255).round().astype(np.uint8)
        self.progress.show(step, preview_picture(middle))

    @staticmethod
    def ui(text: str, frames: np.ndarray | None, fps: float) -> dict:
        """The node's text, and the last validation clip as an animated WebP when there is one."""
        out = {"text": [text]}
        if frames is not None:
            saved = ui.ImageSaveHelper.save_animated_webp(
                frames_to_image_batch(frames), filename_prefix="cav_validation", folder_type=io.FolderType.temp,
                cls=None, fps=fps, lossless=False, quality=85, method=4)
            out.update(images=[saved], animated=(True,))
        return out
