"""Gradient checkpointing of as few of the UNet's blocks as a training step needs to fit a memory target.

What a UNet's blocks keep for backward is far from even: with lean backward, a temporal transformer at the
highest resolution keeps many times what a ResNet block beside it keeps, and recomputing a block costs
about its own forward. So the blocks that keep the most beyond their inputs are recomputed first, one
at a time, until the step fits (``docs/bench/memory_target.md``); a step that fits recomputes nothing.

What a step keeps is counted before training, in one forward of the very UNet with fake tensors
(PyTorch's ``FakeTensorMode``: shapes and dtypes, no memory and no arithmetic) under the contexts training
runs in, with ``saved_tensors_hooks`` counting each saved tensor once against the checkpointable block
running when it was saved. A step's peak is estimated as the weights and buffers, three times the
trainable parameters (their gradients and AdamW's two moments), backward's working memory (taken as
twice the largest activation kept: its gradient and a recomputed operand beside it), and the larger of:
the activations kept as backward starts (a recomputed block's inputs in place of its activations), and,
for each recomputed block, what is kept up to it as backward reaches it (what came after it is freed by
then) with its activations recomputed. Activations kept in bf16 (``ComputeSettings.bf16_activations``) and
feed-forwards recomputed (``recompute_feed_forwards``) are counted as if kept in full, so the estimate
errs high.
"""
from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .compute import autocast, blocks_checkpointed, checkpointable_blocks

GIB = 2 ** 30


@dataclass(frozen=True)
class MemoryPlan:
    """What a training step is estimated to hold at its peak (bytes), with no block recomputed and with
    ``blocks`` (module names, each with its class name) recomputed, against ``target``; ``error`` says
    why nothing could be estimated (then nothing is recomputed)."""
    target: int
    without: int
    estimate: int
    blocks: tuple[tuple[str, str], ...]
    error: str = ""

    @property
    def worth_telling(self) -> bool:
        """Whether the plan changes how training runs, or could not be made."""
        return bool(self.blocks or self.error)

    def describe(self) -> str:
        if self.error:
            return (f"the memory a training step needs could not be estimated ({self.error}): nothing is "
                    f"recomputed for the {self.target / GIB:.1f} GiB target")
        peak = f"a training step is estimated to peak at {self.without / GIB:.1f} GiB"
        if not self.blocks:
            return f"{peak}, within the {self.target / GIB:.1f} GiB target: nothing is recomputed"
        kinds = collections.Counter(kind for _, kind in self.blocks)
        fits = "within" if self.estimate <= self.target else "still above"
        return (f"{peak}, above the {self.target / GIB:.1f} GiB target: the {len(self.blocks)} UNet blocks that "
                f"keep the most are recomputed in backward ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
                f"{self.estimate / GIB:.1f} GiB, {fits} the target")


def plan_message(plan: MemoryPlan | None) -> str:
    """What a run tells of a stage's plan: its description where it changed how training ran or could
    not be made; empty otherwise."""
    return plan.describe() if plan is not None and plan.worth_telling else ""


@dataclass
class SavedActivations:
    total: int  # bytes of activations a step keeps for backward (weights, resident anyway, apart)
    by_block: dict  # checkpointable block -> bytes kept while it ran
    inputs: dict  # checkpointable block -> bytes of its tensor inputs
    before: dict  # checkpointable block -> bytes kept when it started (in the order the blocks ran)
    largest: int = 0  # bytes of the largest activation kept


def saved_for_backward(unet: torch.nn.Module, forward: Callable[[Callable], object],
                       blocks: list[torch.nn.Module]) -> SavedActivations:
    """What a training forward keeps for backward, counted in one run of ``forward(unet)`` with fake
    tensors (see :func:`plan_memory`), in all and for each of ``blocks``."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.multiprocessing.reductions import StorageWeakRef

    running: list[torch.nn.Module] = []
    saved = SavedActivations(0, dict.fromkeys(blocks, 0), dict.fromkeys(blocks, 0), {})

    def enter(block, args, kwargs):
        running.append(block)
        saved.before[block] = saved.total
        saved.inputs[block] += sum({StorageWeakRef(t.untyped_storage()): t.untyped_storage().nbytes()
                                    for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)}.values())

    def leave(*_):  # a forward hook that returned something would replace the output
        running.pop()

    handles = [h for b in blocks for h in (b.register_forward_pre_hook(enter, with_kwargs=True),
                                          b.register_forward_hook(leave))]
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        # The UNet runs on fake copies of its weights, so that a weight saved for backward (resident
        # anyway) is known by its storage, through views and detaches alike.
        fakes = {name: mode.from_tensor(t) for name, t in (*unet.named_parameters(), *unet.named_buffers())}
        weights = {StorageWeakRef(t.untyped_storage()) for t in fakes.values()}
        seen: set = set()

        def pack(tensor):
            key = StorageWeakRef(tensor.untyped_storage())
            if key not in seen and key not in weights:
                seen.add(key)
                size = tensor.untyped_storage().nbytes()
                saved.total += size
                saved.largest = max(saved.largest, size)
                if running:
                    saved.by_block[running[-1]] += size
            return tensor

        def call(*args):
            return torch.func.functional_call(_ClassForward(unet), {"unet." + k: v for k, v in fakes.items()}, args)

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                forward(call)
        finally:
            for handle in handles:
                handle.remove()
    return saved


class _ClassForward(torch.nn.Module):
    """Runs its UNet's own class forward, past what the caller hooked or patched on that one module
    (a host or a test watching the training forwards sees only the real ones)."""

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, *args):
        return type(self.unet).forward(self.unet, *args)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def plan_memory(unet: torch.nn.Module, forward: Callable[[Callable], object], target_bytes: int) -> MemoryPlan:
    """Which blocks to recompute so that a training step whose forward is ``forward(unet)`` fits
    ``target_bytes``: none where it fits, else the blocks that keep the most beyond their inputs, one at a
    time, until it fits or every block that gains is recomputed. ``forward`` runs once with fake tensors
    and, for ``unet``, a stand-in that calls it on fake weights; it builds its inputs inside, with the
    shapes, dtypes and device that training uses."""
    blocks = checkpointable_blocks(unet)
    try:
        saved = saved_for_backward(unet, forward, blocks)
    except Exception as e:  # noqa: BLE001 - an op fake tensors cannot run: train as without a target
        return MemoryPlan(target_bytes, 0, 0, (), f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    held = (_bytes([*unet.parameters(), *unet.buffers()]) + 3 * _bytes(p for p in unet.parameters() if p.requires_grad)
            + 2 * saved.largest)

    def gain(block) -> int:
        return saved.by_block[block] - saved.inputs[block]

    ran = {block: i for i, block in enumerate(saved.before)}  # the order the blocks ran in

    def estimate(chosen: list[torch.nn.Module]) -> int:
        at_start = saved.total - sum(gain(b) for b in chosen)
        recomputing = [saved.before[b] - sum(gain(c) for c in chosen if ran[c] < ran[b])
                       + saved.inputs[b] + saved.by_block[b] for b in chosen]
        return held + max([at_start, *recomputing])

    gains = sorted((b for b in blocks if gain(b) > 0 and b in ran), key=gain, reverse=True)
    chosen: list[torch.nn.Module] = []
    for block in gains:
        if estimate(chosen) <= target_bytes:
            break
        chosen.append(block)
    names = {m: name for name, m in unet.named_modules()}
    return MemoryPlan(target_bytes, estimate([]), estimate(chosen),
                      tuple((names[b], type(b).__name__) for b in chosen))


@contextlib.contextmanager
def named_blocks_checkpointed(unet: torch.nn.Module, names) -> Iterator[None]:
    """Recompute the UNet's blocks named ``names`` in backward, for the block."""
    modules = dict(unet.named_modules())
    with blocks_checkpointed([modules[name] for name in names]):
        yield


def training_forward(device: torch.device, mixed_precision: str, dtype: torch.dtype, latents_shape: tuple[int, ...],
                     text_shape: tuple[int, ...]) -> Callable[[Callable], object]:
    """A training step's forward for :func:`plan_memory`: latents [B, C, F, h, w] and text states as
    training puts them through the UNet, under its autocast."""
    def forward(call):
        with autocast(device, mixed_precision):
            call(torch.empty(latents_shape, dtype=dtype, device=device),
                 torch.zeros(latents_shape[0], dtype=torch.long, device=device),
                 torch.empty(text_shape, dtype=dtype, device=device))
    return forward


@contextlib.contextmanager
def checkpointing_to_fit(unet: torch.nn.Module, compute, latents_shape: tuple[int, ...],
                         text_shape: tuple[int, ...]) -> Iterator[MemoryPlan | None]:
    """For a training stage whose steps put latents of ``latents_shape`` [B, C, F, h, w] and text states of
    ``text_shape`` through ``unet`` (adapters injected, the stage's contexts entered): recompute as many
    blocks as ``compute.memory_target_gib`` needs, and yield the plan (None where there is no target or
    every block is recomputed already)."""
    if compute.memory_target_gib is None or compute.gradient_checkpointing:
        yield None
        return
    forward = training_forward(compute.torch_device, compute.mixed_precision, unet.dtype, latents_shape, text_shape)
    plan = plan_memory(unet, forward, int(compute.memory_target_gib * GIB))
    with named_blocks_checkpointed(unet, [name for name, _ in plan.blocks]):
        yield plan
