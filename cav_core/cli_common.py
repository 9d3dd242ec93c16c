"""What the command line's subcommands share: argument parsing, progress bars, output checks."""
from __future__ import annotations

import re
import sys

from .adapters import check_weight
from .errors import CavError
from .files import check_name_fits
from .lora_schedule import WHOLE_RUN, LoraSchedule


def lora_spec(text: str) -> tuple[str, float, LoraSchedule]:
    """FILE[:STRENGTH[~END_STRENGTH][@START-END]] as (file, strength, schedule).

    What follows the last ':' is a strength only when it starts with a number; otherwise the whole
    text is the file (so C:\\loras\\a.safetensors is a file). @START-END is the part of the denoising
    run the LoRA acts on (fractions; @0-1, the default, is the whole run) and ~END_STRENGTH ramps the
    strength linearly to END_STRENGTH over that part. NaN and inf parse as numbers but are refused.
    """
    path, sep, spec = text.rpartition(":")
    if not (sep and path) or _number(re.split("[~@]", spec, maxsplit=1)[0]) is None:
        return text, 1.0, WHOLE_RUN
    strengths, at, window = spec.partition("@")
    first, ramp, last = strengths.partition("~")
    strength = check_weight(_number(first), text)
    end_strength = _number(last) if ramp else None
    if ramp and end_strength is None:
        raise CavError(f"{text}: a ramp reads STRENGTH~END_STRENGTH, two numbers such as 1~0.2")
    start, end = _window(window, text) if at else (0.0, 1.0)
    return path, strength, LoraSchedule(start, end, end_strength).check(text)


def lora_arg(text: str, scheduled: str = "this LoRA takes one strength for the whole run") -> tuple[str, float]:
    """FILE[:STRENGTH] for what takes a constant strength: a schedule is refused, ``scheduled`` says why."""
    path, strength, schedule = lora_spec(text)
    if not schedule.is_whole_run:
        raise CavError(f"{text} has a schedule (@START-END or ~END_STRENGTH): {scheduled}")
    return path, strength


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _window(text: str, spec: str) -> tuple[float, float]:
    """START-END, split at the '-' that leaves a number on both sides (1e-1-0.5 is 0.1 to 0.5)."""
    for i, char in enumerate(text):
        if char == "-" and _number(text[:i]) is not None and _number(text[i + 1:]) is not None:
            return float(text[:i]), float(text[i + 1:])
    raise CavError(f"{spec}: the schedule reads @START-END, fractions of the denoising run such as @0-0.5 "
                   f"or @0.3-1, not @{text}")


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
