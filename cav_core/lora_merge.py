"""Merging a weighted stack of motion LoRAs into one LoRA that reproduces it.

The exact merge concatenates ranks: per target, the sources' A rows are stacked and their B
columns stacked, each source's B scaled by weight x alpha / rank, so B @ A is the weighted sum of
the deltas and the merged alpha equals the merged rank (scale 1). A target only some sources adapt
gets zero blocks from the others, so every target has the same rank (peft takes one rank per
adapter). ``max_rank`` then truncates each target's delta by SVD and reports the error it made.

Merging combines constant strengths only: a stack whose strengths change during sampling cannot be
written as one LoRA, so an entry with a schedule is refused.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .adapter_file import AdapterFile
from .adapters import LoraWeights, check_weight
from .scheduled_loras import StackEntry, constant_strengths
from .errors import CavError
from .lora_schedule import LoraSchedule


UNSCHEDULED = ("merging is only defined for constant strengths; merge the stack without its schedules, "
               "or sample it with them")


@dataclass(frozen=True)
class MergeResult:
    lora: LoraWeights
    relative_error: float  # Frobenius norm of what the truncation dropped over the full delta, all targets


def _blocks(lora: LoraWeights, target: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    a, b = lora.tensors.get(f"{target}.lora_A.weight"), lora.tensors.get(f"{target}.lora_B.weight")
    if a is None and b is None:
        return None
    if a is None or b is None or a.ndim < 2 or b.ndim < 2 or not a.shape[0] == b.shape[1] == lora.rank:
        raise CavError(f"a LoRA is damaged at layer {target}: its A and B do not make a rank-{lora.rank} pair")
    return a.float(), b.float()


def _concatenated(stack: Sequence[tuple[LoraWeights, float]], target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A (rank, in, *kernel) and B (out, rank, *ones) of ``target`` with the sources' ranks stacked."""
    present = [p for p in (_blocks(lora, target) for lora, _ in stack) if p is not None]
    a_shape, b_shape = present[0][0].shape[1:], (present[0][1].shape[0], *present[0][1].shape[2:])
    if any(a.shape[1:] != a_shape or (b.shape[0], *b.shape[2:]) != b_shape for a, b in present):
        raise CavError(f"the LoRAs have different shapes for layer {target}: they were made for different bases")
    a_parts, b_parts = [], []
    for lora, weight in stack:
        blocks = _blocks(lora, target)
        if blocks is None:  # this source leaves the layer alone: zero blocks keep the rank uniform
            a_parts.append(torch.zeros(lora.rank, *a_shape))
            b_parts.append(torch.zeros(b_shape[0], lora.rank, *b_shape[1:]))
        else:
            a_parts.append(blocks[0])
            b_parts.append(blocks[1] * (weight * lora.alpha / lora.rank))
    return torch.cat(a_parts, 0), torch.cat(b_parts, 1)


def _truncated(a: torch.Tensor, b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The best rank-``rank`` factors of B @ A (B = U S, A = Vh), the dropped and the full squared norm.

    B @ A has rank at most r (the concatenated rank), so its SVD is taken through QR of both factors
    and an r x r core, never the full out x in matrix. Zero columns pad layers with fewer singular values.
    """
    b2, a2 = b.flatten(1).double(), a.flatten(1).double()
    qb, rb = torch.linalg.qr(b2)
    qa, ra = torch.linalg.qr(a2.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    u, vh = qb @ u, vh @ qa.T
    keep = min(rank, s.numel())
    new_b = torch.zeros(b2.shape[0], rank, dtype=torch.float64)
    new_a = torch.zeros(rank, a2.shape[1], dtype=torch.float64)
    new_b[:, :keep] = u[:, :keep] * s[:keep]
    new_a[:keep] = vh[:keep]
    new_b = new_b.reshape(b.shape[0], rank, *b.shape[2:]).float()
    new_a = new_a.reshape(rank, *a.shape[1:]).float()
    return new_a, new_b, float((s[keep:] ** 2).sum()), float((s ** 2).sum())


def merge_loras(stack: Sequence[StackEntry], max_rank: int | None = None) -> MergeResult:
    """One LoRA whose delta on every target is the weighted sum of the stack's deltas.

    Without ``max_rank`` the merge is exact (rank = sum of the ranks). With it, each target's delta is
    cut to its best rank-``max_rank`` approximation and ``relative_error`` says how much was dropped.
    An entry may carry a schedule only if it is the whole run at a constant strength.
    """
    if not stack:
        raise CavError("nothing to merge: give at least one LoRA")
    stack = constant_strengths(stack, UNSCHEDULED)
    roles = sorted({lora.role for lora, _ in stack})
    if len(roles) > 1:
        raise CavError(f"cannot merge LoRAs of different roles ({', '.join(roles)}); merge motion with motion")
    if max_rank is not None and max_rank < 1:
        raise CavError(f"the maximum rank must be >= 1, got {max_rank}")
    targets = sorted({t for lora, _ in stack for t in lora.targets})
    rank = sum(lora.rank for lora, _ in stack)
    parts = {t: _concatenated(stack, t) for t in targets}
    dropped = total = 0.0
    if max_rank is not None:
        rank = min(max_rank, rank)
        for t, (a, b) in parts.items():
            new_a, new_b, lost, full = _truncated(a, b, rank)
            parts[t] = (new_a, new_b)
            dropped, total = dropped + lost, total + full
    tensors = {}
    for t, (a, b) in parts.items():
        tensors[f"{t}.lora_A.weight"], tensors[f"{t}.lora_B.weight"] = a.contiguous(), b.contiguous()
    error = math.sqrt(dropped / total) if total > 0 else 0.0
    return MergeResult(LoraWeights(roles[0], rank, float(rank), tensors), error)


def merge_adapters(sources: Sequence[tuple[str, AdapterFile, float] | tuple[str, AdapterFile, float, LoraSchedule]],
                   max_rank: int | None = None) -> AdapterFile:
    """The T-LoRAs of ``(name, adapter file, weight[, schedule])`` merged into one temporal-only adapter file.

    Every source must be made on one base architecture. The result's ``training`` records the
    sources (name, weight, base, their own record), ``max_rank`` and the relative error.
    """
    if not sources:
        raise CavError("nothing to merge: give at least one adapter file")
    for name, _, weight, *schedule in sources:
        if schedule and isinstance(schedule[0], LoraSchedule) and not schedule[0].is_whole_run:
            raise CavError(f"{name} has a schedule ({schedule[0].describe(weight)}): {UNSCHEDULED}")
    sources = [(name, adapter, weight) for name, adapter, weight, *_ in sources]
    first_name, first, _ = sources[0]
    for name, adapter, _ in sources:
        if adapter.base_fingerprint != first.base_fingerprint:
            raise CavError(f"{name} was trained on base '{adapter.base_name}' (architecture "
                           f"{adapter.base_fingerprint}) but {first_name} on '{first.base_name}' (architecture "
                           f"{first.base_fingerprint}); only LoRAs of one base can be merged")
        if adapter.temporal is None:
            raise CavError(f"{name} holds no motion (temporal) LoRA")
    stack = [(adapter.temporal, check_weight(weight, name)) for name, adapter, weight in sources]
    merged = merge_loras(stack, max_rank)
    record = {"merged_from": [{"file": name, "weight": weight,
                               "base": {"name": adapter.base_name, "fingerprint": adapter.base_fingerprint},
                               "training": adapter.training} for name, adapter, weight in sources],
              "max_rank": max_rank, "relative_error": merged.relative_error}
    return AdapterFile(base_name=first.base_name, base_fingerprint=first.base_fingerprint, temporal=merged.lora,
                       training=record)

