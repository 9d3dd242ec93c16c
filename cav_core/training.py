"""Both stages in one run (the paper's order), and the adapter file a run produces.

Stage 1 (:mod:`absorber_training`) learns the appearance absorber; stage 2
(:mod:`motion_training`) learns the T-LoRA with it frozen. A run with a checkpoint path resumes
where it stopped: a stage-2 checkpoint carries the finished absorber, so stage 1 is not redone.
A run may also keep training a saved T-LoRA, with the absorber it was trained with (stage 1 skipped).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .absorber_training import Absorber, absorber_from_checkpoint, absorber_tensors, train_absorber
from .adapter_file import AdapterFile
from .adapters import LoraWeights
from .checkpoint import RunCheckpoint
from .continuation import continued_record
from .frames import as_clips, run_identity, tensor_digest
from .motion_preview import MotionPreview, training_preview
from .motion_training import motion_clips, train_motion
from .selective_checkpointing import MemoryPlan
from .settings import AbsorberSettings, ComputeSettings, MotionSettings
from .step_loop import Hooks


@dataclass
class TrainResult:
    adapter: AdapterFile
    losses: dict = field(default_factory=dict)
    validation: np.ndarray | None = None  # the last validation clip, float [F, H, W, 3] (Hooks.validate_every)
    validation_prompt: str = ""  # its prompt
    reference: np.ndarray | None = None  # the first clip's frames as trained, uint8 [F, H, W, 3]
    memory_plan: MemoryPlan | None = None  # the T-LoRA steps' estimated peak and blocks recomputed

    def preview(self, fps: float) -> MotionPreview:
        """The saved file's animated preview: the reference as trained, beside the last validation sample."""
        return training_preview(self.reference, self.validation, fps, self.validation_prompt)


def training_record(motion: MotionSettings, frames, absorber: AbsorberSettings | None,
                    tokens: tuple[str, ...] = (), compute: ComputeSettings | None = None,
                    recipe: str | None = None) -> dict:
    """What an adapter file's metadata says about how it was made: every setting used, the training
    size and length, and every clip's caption and frame count as given (``frames``: the run's clips
    or one frames array)."""
    clips = as_clips(frames, motion.prompt)
    shape = clips[0].frames.shape
    record = {k: v for k, v in asdict(motion).items() if k != "alpha"}
    record.update(frames=int(shape[0]), size=[int(shape[2]), int(shape[1])], clips=[c.record for c in clips])
    if recipe is not None:
        record["recipe"] = recipe
    if absorber is not None:
        record["absorber"] = {**asdict(absorber), "crop_range": list(absorber.crop_range), "tokens": list(tokens)}
    if compute is not None:
        record["mixed_precision"] = compute.mixed_precision
        record["gradient_checkpointing"] = compute.gradient_checkpointing
        record["recompute_feed_forwards"] = compute.feed_forward_checkpointing
        record["bf16_activations"] = compute.bf16_activations
    return record


def motion_adapter(base, lora: LoraWeights, motion: MotionSettings, frames,
                   absorber: Absorber | None = None, absorber_settings: AbsorberSettings | None = None,
                   compute: ComputeSettings | None = None,
                   continued_from: tuple[str, dict] | None = None) -> AdapterFile:
    """The adapter file of a finished run: the T-LoRA, with its absorber kept apart, and the record.
    ``continued_from``: (file name, record) of the saved T-LoRA the run kept training."""
    absorber = absorber or Absorber(None, None)
    recipe = getattr(getattr(base, "recipe", None), "name", None)
    record = training_record(motion, frames, absorber_settings, absorber.tokens, compute, recipe)
    if continued_from is not None:
        name, previous = continued_from
        record.update(continued_record(previous, name, motion.steps))
    return AdapterFile(base_name=base.name, base_fingerprint=base.fingerprint, temporal=lora,
                       spatial=absorber.spatial, textual_inversion=absorber.textual_inversion, training=record)


def train_customization(base, frames, absorber_settings: AbsorberSettings,
                        motion_settings: MotionSettings, compute: ComputeSettings = ComputeSettings(),
                        hooks: Hooks | None = None, init_lora: LoraWeights | None = None,
                        absorber: Absorber | None = None,
                        continued_from: tuple[str, dict] | None = None) -> TrainResult:
    """Both stages in one run, resumable from ``hooks.checkpoint_path``; returns the adapter file
    content (T-LoRA plus the absorber, kept apart) without writing it.

    ``frames``: one clip, or several ``(frames, caption)`` clips of the motion (see ``train_motion``).
    ``init_lora``: a saved T-LoRA to keep training. ``absorber``: a finished absorber to use instead
    of training one (stage 1 skipped; ``absorber_settings`` then describe it for the record).
    """
    hooks = hooks or Hooks()
    absorber_settings.validate()
    clips, motion_settings = motion_clips(base, frames, motion_settings)
    identity = run_identity(base, clips, absorber_settings, motion_settings,
                            init_lora=tensor_digest(init_lora.tensors) if init_lora else None,
                            absorber=tensor_digest(absorber_tensors(absorber)) if absorber else None)
    ckpt = RunCheckpoint(hooks.checkpoint_path, hooks.checkpoint_every, identity)
    saved = ckpt.load()
    if absorber is None and saved is not None and saved["meta"]["stage"] == "motion":
        absorber = absorber_from_checkpoint(saved["tensors"], json.loads(saved["meta"].get("absorber_losses", "[]")),
                                            absorber_settings)
    elif absorber is None:
        absorber = train_absorber(base, clips, absorber_settings, compute, hooks, ckpt, saved)
        saved = None
    ckpt.extra_meta["absorber_losses"] = json.dumps(list(absorber.losses))
    motion = train_motion(base, clips, motion_settings, absorber, compute, hooks, init_lora, _ckpt=ckpt, _saved=saved)
    adapter = motion_adapter(base, motion.lora, motion_settings, clips, absorber, absorber_settings, compute,
                             continued_from)
    ckpt.discard()
    return TrainResult(adapter, {"absorber": list(absorber.losses), "motion": motion.losses}, motion.validation,
                       motion.validation_prompt, motion.reference, motion.memory_plan)
