"""The rows of a Motion LoRA Stack node: its ``rows`` JSON, parsed and checked (no ComfyUI import).

``rows`` is a JSON list; each row is an object with these keys (all but one of ``lora`` / ``input``
optional)::

    {"on": true, "lora": "zigzag.safetensors", "input": null, "strength": 0.8,
     "start": 0.0, "end": 1.0, "end_strength": null}

``lora`` names a file of the motion-LoRA folders (as listed, with ``/`` for subfolders); ``input``
instead names a connected motion-LoRA socket of the node (a LoRA trained in the same graph). A
row acts from ``start`` to ``end`` (fractions of the denoising run) and, with ``end_strength``,
ramps linearly from ``strength`` to it. Rows that are off, or that name neither a file nor a
socket, add nothing. The editor writes this JSON; an API prompt may give it directly.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cav_core.errors import CavError
from cav_core.lora_schedule import LoraSchedule

from .constants import STACK_ROWS
from .paths import LISTED_LORA_EXTENSIONS, check_inside_folders, find_in_folders

ROW_KEYS = ("on", "lora", "input", "strength", "start", "end", "end_strength")
MAX_ROWS = 64


@dataclass(frozen=True)
class StackRow:
    index: int  # 1-based, as the node shows it
    on: bool = True
    lora: str | None = None
    input: str | None = None
    strength: float = 1.0
    schedule: LoraSchedule = LoraSchedule()

    @property
    def label(self) -> str:
        """How messages name the row: its number and what it takes."""
        what = self.lora or (f"socket {self.input}" if self.input else "no motion picked")
        return f"row {self.index} ({what})"

    @property
    def is_empty(self) -> bool:
        return self.lora is None and self.input is None

    def as_json(self) -> dict:
        return {"on": self.on, "lora": self.lora, "input": self.input, "strength": self.strength,
                "start": self.schedule.start, "end": self.schedule.end, "end_strength": self.schedule.end_strength}


def _strength(value, what: str) -> float:
    low, high = STACK_ROWS["strength_min"], STACK_ROWS["strength_max"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise CavError(f"{what} must be a finite number within {low:g}..{high:g}, got {value!r}")
    return float(value)


def _fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CavError(f"{what} must be a number (a fraction of the denoising run, 0..1), got {value!r}")
    return float(value)


def _name(value, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CavError(f"{what} must be a non-empty string or null, got {value!r}")
    return value


def parse_row(index: int, raw) -> StackRow:
    where = f"row {index}"
    if not isinstance(raw, dict):
        raise CavError(f"{where} must be an object like {{\"lora\": \"file.safetensors\", \"strength\": 1.0}}, "
                       f"got {json.dumps(raw)[:80]}")
    unknown = sorted(set(raw) - set(ROW_KEYS))
    if unknown:
        raise CavError(f"{where} has unknown keys {unknown}; a row may have {', '.join(ROW_KEYS)}")
    on = raw.get("on", True)
    if not isinstance(on, bool):
        raise CavError(f"{where}: 'on' must be true or false, got {on!r}")
    lora, socket = _name(raw.get("lora"), f"{where}: 'lora'"), _name(raw.get("input"), f"{where}: 'input'")
    if lora and socket:
        raise CavError(f"{where} names both a file ('{lora}') and a socket ('{socket}'); a row takes one of them")
    if lora and os.path.splitext(lora)[1].lower() not in LISTED_LORA_EXTENSIONS:
        raise CavError(f"{where}: '{lora}' is not a motion-LoRA file ({', '.join(LISTED_LORA_EXTENSIONS)})")
    row = StackRow(index, on, lora, socket)
    strength = _strength(raw.get("strength", 1.0), f"{row.label}: strength")
    end_strength = raw.get("end_strength")
    if end_strength is not None:
        end_strength = _strength(end_strength, f"{row.label}: the strength at the end of its ramp")
    schedule = LoraSchedule(_fraction(raw.get("start", 0.0), f"{row.label}: start"),
                            _fraction(raw.get("end", 1.0), f"{row.label}: end"), end_strength)
    return StackRow(index, on, lora, socket, strength, schedule.check(f"{row.label}: schedule"))


def parse_rows(text) -> list[StackRow]:
    """The rows of ``text`` (the widget's JSON), every one checked; CavError names the first bad row."""
    if not isinstance(text, str):
        raise CavError(f"rows must be JSON text (a list of rows), got {type(text).__name__}")
    try:
        raw = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as e:
        raise CavError(f"rows is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); it must be a "
                       "list of rows like [{\"lora\": \"file.safetensors\", \"strength\": 1.0}]") from None
    return parse_row_list(raw)


def parse_row_list(raw) -> list[StackRow]:
    """Rows already decoded from JSON (a list of objects), every one checked."""
    if not isinstance(raw, list):
        raise CavError(f"rows must be a JSON list of rows, got {type(raw).__name__}")
    if len(raw) > MAX_ROWS:
        raise CavError(f"rows holds {len(raw)} rows; a stack takes at most {MAX_ROWS}")
    return [parse_row(i, r) for i, r in enumerate(raw, start=1)]


def check_row_files(rows: Iterable[StackRow], roots: Iterable[str]) -> None:
    """Every file a row names stays inside the folders; every file a row that is on uses exists."""
    roots = list(roots)
    for row in rows:
        if row.lora is None:
            continue
        check_inside_folders(roots, row.lora, f"{row.label}: the file")
        if row.on:
            try:
                find_in_folders(roots, row.lora)
            except CavError as e:
                raise CavError(f"{row.label}: {e}; pick another file, switch the row off or remove it") from None
