"""Weighted LoRAs whose strengths follow schedules during the denoising run.

A stack entry is ``(LoraWeights, strength)`` (the whole run at a constant strength) or
``(LoraWeights, strength, LoraSchedule)``. :func:`stepped_loras` applies a stack for the sampling
loop: when no strength changes from step to step it is :func:`adapters.applied_loras` (fused once,
no per-step cost). Otherwise, fused, it keeps each scheduled LoRA's deltas and, at a step whose
strengths differ from the previous step's, copies the saved originals of the layers concerned back
and adds the deltas at the new strengths; unfused, it sets the peft adapters' scales. Either way the
base leaves bit for bit as it entered.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .adapters import (LoraWeights, add_delta, applied_loras, check_lora_fits, check_weight, loaded_loras,
                       restored_weights, set_strength)
from .errors import CavError
from .lora_schedule import WHOLE_RUN, LoraSchedule

StackEntry = tuple[LoraWeights, float] | tuple[LoraWeights, float, LoraSchedule | None]


@dataclass(frozen=True)
class ScheduledLora:
    """One stack entry, checked: the LoRA, its strength (at the window's start, for a ramp), its schedule."""

    lora: LoraWeights
    strength: float
    schedule: LoraSchedule = WHOLE_RUN


def scheduled(entries: Sequence[StackEntry], what: str = "motion LoRA") -> list[ScheduledLora]:
    """The entries as checked :class:`ScheduledLora`: a finite strength, a valid schedule (None: the whole run)."""
    entries, stack = list(entries), []
    for i, entry in enumerate(entries):
        label = f"{what} {i + 1} of {len(entries)}"
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3) or not isinstance(entry[0], LoraWeights):
            raise CavError(f"{label} must be (LoRA, strength) or (LoRA, strength, schedule)")
        schedule = entry[2] if len(entry) == 3 and entry[2] is not None else WHOLE_RUN
        if not isinstance(schedule, LoraSchedule):
            raise CavError(f"{label}: the schedule must be a LoraSchedule, not {type(schedule).__name__}")
        stack.append(ScheduledLora(entry[0], check_weight(entry[1], label), schedule.check(label)))
    return stack


def constant_strengths(entries: Sequence[StackEntry], why: str) -> list[tuple[LoraWeights, float]]:
    """``(LoRA, strength)`` pairs of a stack that must not be scheduled; ``why`` says what refuses it."""
    pairs = []
    for i, entry in enumerate(scheduled(entries, "LoRA")):
        if not entry.schedule.is_whole_run:
            raise CavError(f"LoRA {i + 1} of {len(entries)} has a schedule "
                           f"({entry.schedule.describe(entry.strength)}): {why}")
        pairs.append((entry.lora, entry.strength))
    return pairs


def strength_table(stack: Sequence[ScheduledLora], steps: int) -> list[tuple[float, ...]]:
    """Each step's strengths, one per LoRA; refuses a scheduled LoRA that acts at no step."""
    for i, entry in enumerate(stack):
        if not entry.schedule.is_whole_run:
            entry.schedule.check_acts(steps, f"LoRA {i + 1} of {len(stack)} "
                                             f"({entry.schedule.describe(entry.strength)})")
    return [tuple(e.schedule.strength_at(e.strength, step, steps) for e in stack) for step in range(steps)]


class StepStrengths:
    """What the sampling loop calls before each step to bring the LoRAs to that step's strengths."""

    def __init__(self, table: list[tuple[float, ...]], apply=None):
        self.table, self._apply, self._current = table, apply, table[0] if table else ()
        self.changes = 0  # how many times the strengths changed (and were re-applied) since the first step

    def at_step(self, step: int) -> bool:
        """Apply step ``step``'s strengths when they differ from those applied; True when they did."""
        wanted = self.table[step]
        if wanted == self._current:
            return False
        changed = [j for j, (a, b) in enumerate(zip(self._current, wanted)) if a != b]
        self._apply(changed, wanted)
        self._current = wanted
        self.changes += 1
        return True


@contextlib.contextmanager
def stepped_loras(unet: torch.nn.Module, stack: Sequence[ScheduledLora], steps: int,
                  fuse: bool = True) -> Iterator[StepStrengths]:
    """Apply ``stack`` for a ``steps``-step loop; call ``at_step(i)`` on what it yields before step i."""
    table = strength_table(stack, steps)
    if all(row == table[0] for row in table):  # constant strengths: fused once for the loop
        with applied_loras(unet, [(e.lora, s) for e, s in zip(stack, table[0])], fuse=fuse):
            yield StepStrengths(table)
        return
    for i, entry in enumerate(stack):
        check_lora_fits(unet, entry.lora, f"LoRA {i + 1} of {len(stack)}")
    loras = [e.lora for e in stack]
    if not fuse:
        with loaded_loras(unet, loras) as names:
            def scale(changed: list[int], strengths: tuple[float, ...]) -> None:
                for j in changed:
                    set_strength(unet, names[j], strengths[j])

            scale(list(range(len(stack))), table[0])
            yield StepStrengths(table, scale)
        return
    varies = {j for j in range(len(stack)) if any(row[j] != table[0][j] for row in table)}
    moving = {t for j in varies for t in loras[j].targets}  # layers whose weights change during the run
    with restored_weights(unet, [t for lora in loras for t in lora.targets]) as weights:
        # Every LoRA's delta on a moving layer, kept on the weight's device: a re-fuse is a copy and adds.
        deltas = {(j, t): lora.delta(t).to(weights[t][0].device)
                  for j, lora in enumerate(loras) for t in lora.targets if t in moving}
        for j, lora in enumerate(loras):  # layers no schedule moves are fused once
            for t in lora.targets:
                if t not in moving:
                    add_delta(weights[t][0], lora.delta(t), table[0][j])

        def refuse(changed: list[int], strengths: tuple[float, ...]) -> None:
            with torch.no_grad():
                for t in sorted({t for j in changed for t in loras[j].targets}):
                    weight, saved = weights[t]
                    weight.copy_(saved)
                    for j, lora in enumerate(loras):
                        if strengths[j] != 0 and (j, t) in deltas:
                            add_delta(weight, deltas[j, t], strengths[j])

        refuse(sorted(varies), table[0])
        yield StepStrengths(table, refuse)
