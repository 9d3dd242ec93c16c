"""When, during the denoising run, a motion LoRA acts, and how strongly.

A schedule is the part of the run a LoRA acts on, as fractions of the sampling steps (``start`` to
``end``), with an optional linear ramp from the LoRA's strength at ``start`` to ``end_strength`` at
``end``. The whole run at a constant strength (the default) is "no schedule": sampling then fuses
the LoRA once for the whole loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import CavError


@dataclass(frozen=True)
class LoraSchedule:
    start: float = 0.0  # fraction of the denoising run where the LoRA starts acting
    end: float = 1.0  # fraction where it stops acting
    end_strength: float | None = None  # strength reached at ``end`` (linear ramp); None: constant

    def check(self, what: str = "schedule") -> LoraSchedule:
        """Refuse non-finite bounds, bounds outside 0..1, a start after the end, a non-finite ramp."""
        for name, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise CavError(f"{what}: {name} must be a fraction of the denoising run within 0..1, got {value!r}")
        if self.start >= self.end:
            raise CavError(f"{what}: start ({self.start:g}) must come before end ({self.end:g})")
        if self.end_strength is not None and (not isinstance(self.end_strength, (int, float))
                                              or not math.isfinite(self.end_strength)):
            raise CavError(f"{what}: the strength at the end must be a finite number, got {self.end_strength!r}")
        return self

    @property
    def is_whole_run(self) -> bool:
        """True when the LoRA acts over the whole run at a constant strength (no schedule)."""
        return self.start == 0.0 and self.end == 1.0 and self.end_strength is None

    def describe(self, strength: float) -> str:
        """The schedule in words, for messages: 'strength 1 to 0.2 over 0.3-1 of the run'."""
        ramp = f" to {self.end_strength:g}" if self.end_strength is not None else ""
        return f"strength {strength:g}{ramp} over {self.start:g}-{self.end:g} of the run"

    def acts_at(self, step: int, steps: int) -> bool:
        """Whether the LoRA acts at step ``step`` (0-based) of ``steps``: the step's middle is in the window."""
        return self.start <= (step + 0.5) / steps < self.end

    def check_acts(self, steps: int, what: str = "schedule") -> LoraSchedule:
        """Refuse a window so narrow that no step of a ``steps``-step run has its middle in it."""
        if not any(self.acts_at(i, steps) for i in range(steps)):
            raise CavError(f"{what}: the window {self.start:g}-{self.end:g} holds no step of a {steps}-step run "
                           f"(each step is 1/{steps} of the run, counted at its middle); widen the window or "
                           "use more steps")
        return self

    def strength_at(self, strength: float, step: int, steps: int) -> float:
        """The LoRA's strength at sampling step ``step`` (0-based) of ``steps``.

        Step i covers the run from i/steps to (i+1)/steps and is placed at its middle; the LoRA acts
        at a step whose middle lies in [start, end). A ramp goes linearly from ``strength`` at
        ``start`` to ``end_strength`` at ``end``, read at the step's middle.
        """
        if not self.acts_at(step, steps):
            return 0.0
        at = (step + 0.5) / steps
        if self.end_strength is None:
            return strength
        return strength + (self.end_strength - strength) * (at - self.start) / (self.end - self.start)


WHOLE_RUN = LoraSchedule()
