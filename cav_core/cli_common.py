"""What the command line's subcommands share: argument parsing, progress bars, output checks."""
from __future__ import annotations

import sys

from .adapters import check_weight
from .errors import CavError
from .files import check_name_fits


def lora_arg(text: str) -> tuple[str, float]:
    """FILE[:WEIGHT]; the weight is taken only when the part after the last ':' is a number.

    NaN and inf parse as numbers but would ruin every output: refused.
    """
    path, sep, weight = text.rpartition(":")
    if sep and path:
        try:
            value = float(weight)
        except ValueError:
            return text, 1.0
        return path, check_weight(value, text)
    return text, 1.0


def size_arg(text: str):
    if "x" in text:
        w, h = text.lower().split("x", 1)
        return int(w), int(h)
    return int(text)


class ProgressBars:
    """A one-line progress display on stderr (tqdm when present)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bars = quiet, {}

    def training(self, progress) -> None:
        if self.quiet:
            return
        bar = self._bar(progress.stage, progress.total)
        bar.update(progress.step - bar.n)
        bar.set_postfix(loss=f"{progress.loss:.4f}")
        if progress.step == progress.total:
            bar.close()

    def sampling(self, step: int, total: int) -> None:
        if self.quiet:
            return
        bar = self._bar("sampling", total, fresh=step == 1)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    def _bar(self, name: str, total: int, fresh: bool = False):
        from tqdm.auto import tqdm

        if fresh or name not in self.bars:
            self.bars[name] = tqdm(total=total, desc=name, file=sys.stderr, leave=True, dynamic_ncols=True)
        return self.bars[name]


def check_adapter_out(path: str, suffix: str = "") -> None:
    if not path.endswith(".safetensors"):
        raise CavError("--out must name a .safetensors file")
    check_name_fits(path, suffix)


def video_options(args, base):
    """The clip's frame selection: what the flags say, else the base's recipe (frames and size)."""
    from .video_io import VideoOptions

    return VideoOptions(max_frames=args.frames or base.default_frames, skip_first=args.skip_first,
                        every_nth=args.every_nth, target_fps=args.fps, size=args.size or base.default_size)
