"""Training nodes: stage 1 appearance absorber, stage 2 motion T-LoRA (the paper's order).

Every training setting has an ``auto`` value (0 for numbers): the base's recipe decides it
(``cav_core.recipe``), and the node's text shows what it resolved to.
"""
from __future__ import annotations

import os

import numpy as np
from comfy_api.latest import io, ui

from cav_core.absorber_training import absorber_from_file, train_absorber
from cav_core.continuation import continuation_settings
from cav_core.motion_training import train_motion
from cav_core.selective_checkpointing import plan_message
from cav_core.settings import ABSORBER_KINDS, MOTION_LOSSES, ComputeSettings, MotionSettings
from cav_core.step_loop import Hooks
from cav_core.training import motion_adapter

from . import folders, host, paths, types
from .constants import NODE_IDS
from .convert import image_batch_to_frames, loss_graph
from .previews import ValidationPreviews
from .values import LoadedBase, MotionLora, TrainedAbsorber, TrainingClips, check_same_base

SEED_MAX = 2**31 - 1
AUTO = "auto"
SWITCH = {AUTO: None, "on": True, "off": False}  # a tri-state widget's value -> explicit setting


AUTO_TIMESTEP = -1  # min_timestep's auto: 0 is a setting of its own (every timestep)


def auto_number(value):
    """0 means auto: the recipe's value."""
    return value or None


def auto_choice(value: str):
    return None if value == AUTO else value


CHECKPOINT_EVERY = 50  # steps between checkpoints of a node's training (an interrupted run resumes)


def reference_clips(loaded: LoadedBase, reference, caption: str, more: TrainingClips | None) -> list:
    """The training clips: the reference with ``caption``, then any Add Training Clip clips (which
    the engine brings to the reference's size and frame count)."""
    frames = image_batch_to_frames(reference, "reference")
    loaded.base.check_frame_size(frames.shape[2], frames.shape[1], "the reference video")
    return [(frames, caption), *(more.clips if more else ())]


def training_hooks(total: int, node_id, stage: str, **extra) -> Hooks:
    return Hooks(on_progress=host.TrainingProgress(total, node_id, stage), should_stop=host.should_stop,
                 checkpoint_folder=folders.checkpoint_folder(), checkpoint_every=CHECKPOINT_EVERY, **extra)


def _more_clips_input() -> io.Input:
    return types.TrainingClips.Input("more_clips", optional=True,
                                     tooltip="More clips of the same motion, each with its caption (Add Training "
                                             "Clip); brought to the reference's size and frame count.")


def compute_for(loaded: LoadedBase, device, gradient_checkpointing: bool = False,
                memory_target_gib: float = 0.0) -> ComputeSettings:
    """How a training node's steps run on ``device``; a memory target of 0 is what the device has free."""
    return ComputeSettings(device=str(device), mixed_precision=host.mixed_precision_for(device, loaded.base.unet.dtype),
                           gradient_checkpointing=gradient_checkpointing,
                           memory_target_gib=memory_target_gib or host.training_memory_target(loaded, device))


def _checkpointing_input() -> io.Boolean.Input:
    # Optional so that API prompts written before it still run.
    return io.Boolean.Input(
        "gradient_checkpointing", default=False, optional=True,
        tooltip="Recompute every block's activations in the backward pass instead of keeping them: the same "
                "training in the least memory, each step slower (on the CPU benchmark's base 0.83x the peak "
                "at 1.4x the step). Off, a step estimated to peak above memory_target_gib still recomputes the "
                "blocks that keep the most, as few as fit, and the node's text says so.")


def _memory_target_input() -> io.Float.Input:
    # Optional, and last, so that saved workflows and API prompts written before it still run.
    return io.Float.Input(
        "memory_target_gib", default=0.0, min=0.0, max=4096.0, step=0.5, round=0.01, optional=True,
        tooltip="The most memory a training step may take, in GiB. A step estimated to peak above it recomputes "
                "in backward the UNet blocks that keep the most, as few as fit: the same training, each step "
                "a little slower; the node's text says which. 0 = auto: what the device has free once the base "
                "is loaded, less ComfyUI's reserve. Not used with gradient_checkpointing on.")


def memory_note(plan) -> str:
    """The node text's note on a stage's memory plan (``plan_message``), if any."""
    message = plan_message(plan)
    return f"; {message}" if message else ""


def final_loss(losses) -> str:
    tail = [v for v in list(losses)[-10:] if np.isfinite(v)]
    return f"{np.mean(tail):.4g}" if tail else "n/a"


def _seed(tooltip: str) -> io.Int.Input:
    # Training seeds stay fixed after a run (no randomize widget), so re-queueing reuses the cache.
    return io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=False, tooltip=tooltip)


def _auto_int(id: str, max: int, tooltip: str) -> io.Int.Input:
    return io.Int.Input(id, default=0, min=0, max=max, tooltip=f"{tooltip} 0 = auto: the base's recipe.")


def _auto_float(id: str, tooltip: str, step: float = 1e-5) -> io.Float.Input:
    return io.Float.Input(id, default=0.0, min=0.0, max=0.5, step=step, round=1e-6,
                          tooltip=f"{tooltip} 0 = auto: the base's recipe.")


def _switch(id: str, tooltip: str, optional: bool = False) -> io.Combo.Input:
    return io.Combo.Input(id, options=list(SWITCH), default=AUTO, optional=optional,
                          tooltip=f"{tooltip} auto: the base's recipe.")


class TrainAbsorber(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["train_absorber"],
            display_name=types.display_name("Train Appearance Absorber"),
            category=types.CATEGORY,
            description="Stage 1: learns what the reference LOOKS like (temporal layers off, random crops of "
                        "shuffled frames), so the motion LoRA trained next does not copy its appearance. "
                        "Settings left on auto come from the base's recipe.",
            inputs=[
                types.T2VBase.Input("base", tooltip="The base from Load T2V Base."),
                io.Image.Input("reference", tooltip="Frames of the reference clip (Load Reference Video)."),
                io.Combo.Input("kind", options=[AUTO, *(k for k in ABSORBER_KINDS if k != "none")], default=AUTO,
                               tooltip="slora: a LoRA on the spatial attention layers; ti: a learned token "
                                       "(textual inversion); dual: both (the paper's best). auto: the base's "
                                       "recipe."),
                io.String.Input("appearance_prompt", multiline=True, default="",
                                tooltip="What the frames look like, without motion words, e.g. 'a red square "
                                        "on a white background'."),
                _auto_int("steps", 20000, "Training steps (each a batch of 4 crops)."),
                _auto_float("lr", "Learning rate of the S-LoRA."),
                _auto_float("ti_lr", "Learning rate of the textual-inversion token.", step=1e-4),
                _auto_int("rank", 256, "Rank of the S-LoRA."),
                io.Float.Input("crop_min", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Smallest random crop, as a fraction of the frame side (0 with crop_max 0 "
                                       "= auto: the base's recipe)."),
                io.Float.Input("crop_max", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Largest random crop, as a fraction of the frame side (0 with crop_min 0 "
                                       "= auto)."),
                _seed("Seed of the crops, noise and initial weights; the same seed repeats the run."),
                _checkpointing_input(),
                _more_clips_input(),
                _memory_target_input(),
            ],
            outputs=[
                types.Absorber.Output(display_name="absorber",
                                      tooltip="The absorber, for Train Motion T-LoRA or Apply Appearance."),
                io.Image.Output(display_name="loss_graph", tooltip="The training loss per step."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, base: LoadedBase, reference, kind: str, appearance_prompt: str, steps: int, lr: float,
                ti_lr: float, rank: int, crop_min: float, crop_max: float, seed: int,
                gradient_checkpointing: bool = False, more_clips: TrainingClips | None = None,
                memory_target_gib: float = 0.0) -> io.NodeOutput:
        with host.engine_call():
            settings = base.base.recipe.absorber_settings(
                kind=auto_choice(kind), prompt=appearance_prompt.strip(), steps=auto_number(steps),
                lr=auto_number(lr), ti_lr=auto_number(ti_lr), rank=auto_number(rank), seed=seed,
                crop_range=(crop_min, crop_max) if crop_min or crop_max else None)
            settings.validate()
            clips = reference_clips(base, reference, settings.prompt, more_clips)
            hooks = training_hooks(settings.steps, cls.hidden.unique_id, "absorber")
            device = host.load_for_work(base, host.TRAINING_MEMORY)
            absorber = train_absorber(base.base, clips, settings,
                                      compute_for(base, device, gradient_checkpointing, memory_target_gib), hooks)
        host.settle()
        result = TrainedAbsorber(absorber, base.name, base.fingerprint, settings)
        graph = loss_graph({"absorber": absorber.losses}, host.intermediate_device())
        text = (f"{result.kind} absorber ({base.base.recipe.name} recipe): {settings.steps} steps, rank "
                f"{settings.rank}, lr {settings.lr:g}, final loss {final_loss(absorber.losses)}")
        if absorber.tokens:
            text += f"; token {', '.join(absorber.tokens)}"
        text += memory_note(absorber.memory_plan)
        return io.NodeOutput(result, graph, ui=ui.PreviewText(text))


def motion_inputs(switch, later_inputs: bool = True) -> list:
    """Train Motion T-LoRA's inputs; ``switch(id, tooltip, optional)`` makes the on/off settings'
    inputs (tri-state combos here, booleans on the deprecated node, in the same order). The
    deprecated node keeps the inputs it had (``later_inputs`` False): saved widget values map by position."""
    inputs = [
        types.T2VBase.Input("base", tooltip="The base from Load T2V Base."),
        io.Image.Input("reference", tooltip="Frames of the reference clip (Load Reference Video)."),
        io.String.Input("prompt", multiline=True, default="",
                        tooltip="Caption of the whole reference clip, e.g. 'a red square moving on a white "
                                "background'. The absorber's token is added when absorber_token_in_prompt is on."),
        _auto_int("steps", 20000, "Training steps. Camera moves converge fast; body motion needs more."),
        _auto_float("lr", "Learning rate of the T-LoRA."),
        _auto_int("rank", 256, "Rank of the T-LoRA (the paper uses 4)."),
        _seed("Seed of the noise, timesteps and initial weights; the same seed repeats the run."),
        io.String.Input("name", default="my_motion",
                        tooltip="Name of the motion LoRA (also its file name when saved; reduced to a safe file "
                                "name)."),
        io.Boolean.Input("save", default=False,
                         tooltip="Save the finished LoRA (with its absorber kept apart) to models/cav_motion_loras, "
                                 "with an animated preview beside it; an existing name gets a number added."),
        io.Int.Input("preview_every", default=25, min=0, max=10000,
                     tooltip="Show the predicted middle frame on the node every N steps (0 = never)."),
        io.Combo.Input("loss", options=[AUTO, *MOTION_LOSSES], default=AUTO,
                       tooltip="mse: the paper's noise-prediction loss; debiased: MotionDirector's "
                               "appearance-debiased temporal loss added. auto: the base's recipe."),
        switch("include_transformer_in", "Also adapt the UNet's first temporal transformer (transformer_in).",
               False),
        switch("include_feed_forward", "Also adapt the temporal feed-forward layers (more capacity, more risk "
                                       "of learning appearance).", False),
        switch("include_temporal_convs", "Also adapt the temporal convolutions (not the paper's setting; the "
                                         "bundled base's recipe turns it on, as attention alone learns no path "
                                         "there).", False),
        switch("absorber_token_in_prompt", "Put the absorber's token (ti, dual) in this caption. Off: the token "
                                           "is still trained and kept, but the T-LoRA trains beside the "
                                           "absorber's S-LoRA alone.", True),  # optional: older API prompts lack it
        _checkpointing_input(),
        types.Absorber.Input("absorber", optional=True,
                             tooltip="The appearance absorber of the same reference (Train Appearance Absorber). "
                                     "Without it the motion LoRA also learns the look (unless init_lora brings "
                                     "the absorber stored in its file)."),
    ]
    if not later_inputs:
        return inputs
    return inputs + [
        _more_clips_input(),
        types.MotionLora.Input("init_lora", optional=True,
                               tooltip="Keep training this motion LoRA (Load Motion LoRA or a training node) "
                                       "instead of starting afresh: its rank and layers are kept, its record adds "
                                       "up the steps, and its stored absorber is used when none is connected."),
        io.Int.Input("validate_every", default=0, min=0, max=100000, optional=True,
                     tooltip="Every N steps, sample the validation prompts with the LoRA so far and show them on "
                             "the node (0 = never). Each costs a short sampling run."),
        io.String.Input("validation_prompts", multiline=True, default="", optional=True,
                        tooltip="One prompt per line, best a new subject or scene (empty: the new appearances "
                                "the base's recipe names, else the reference's caption). The last sample is shown "
                                "beside the reference in the saved file's preview."),
        io.Int.Input("min_timestep", default=AUTO_TIMESTEP, min=AUTO_TIMESTEP, max=100000, optional=True,
                     tooltip="Train on the diffusion timesteps from this one up only, the noisier ones, where a "
                             "sample's motion is settled (0 = all of them). -1 = auto: the base's recipe."),
        _memory_target_input(),
    ]


MOTION_OUTPUTS = [
    types.MotionLora.Output(display_name="motion_lora", tooltip="The motion LoRA, for the stack, Save or Inspect nodes."),
    io.Image.Output(display_name="loss_graph", tooltip="The training loss per step."),
    io.String.Output(display_name="saved_file", tooltip="File name in models/cav_motion_loras, empty when not saved."),
]


def describe_motion(settings: MotionSettings) -> str:
    layers = ["attention"] + [name for name, on in (("transformer_in", settings.include_transformer_in),
                                                    ("feed-forward", settings.include_feed_forward),
                                                    ("temporal convs", settings.include_temporal_convs)) if on]
    token = "in" if settings.absorber_token_in_prompt else "out"
    timesteps = f", timesteps from {settings.min_timestep}" if settings.min_timestep else ""
    return (f"rank {settings.rank}, lr {settings.lr:g}, {settings.loss} loss, {' + '.join(layers)}, "
            f"absorber token {token}{timesteps}")


class TrainMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["train_motion"],
            display_name=types.display_name("Train Motion T-LoRA"),
            category=types.CATEGORY,
            description="Stage 2: with the absorber frozen, learns a LoRA on the temporal layers from the ordered "
                        "reference clip: the reference's MOTION, reusable with any prompt. Settings left on auto "
                        "come from the base's recipe.",
            inputs=motion_inputs(_switch),
            outputs=MOTION_OUTPUTS,
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def settings(cls, base: LoadedBase, prompt: str, steps: int, lr: float, rank: int, seed: int, loss: str,
                 include_transformer_in: str, include_feed_forward: str, include_temporal_convs: str,
                 absorber_token_in_prompt: str, init_lora: MotionLora | None = None,
                 min_timestep: int = AUTO_TIMESTEP) -> MotionSettings:
        """The widgets as settings: explicit values, else what ``init_lora``'s file fixes (a run that
        keeps training it), else the base's recipe, else the paper's."""
        fixed = continuation_settings(init_lora.adapter, f"init_lora '{init_lora.name}'") if init_lora else {}
        explicit = dict(rank=auto_number(rank), include_transformer_in=SWITCH[include_transformer_in],
                        include_feed_forward=SWITCH[include_feed_forward],
                        include_temporal_convs=SWITCH[include_temporal_convs],
                        absorber_token_in_prompt=SWITCH[absorber_token_in_prompt])
        return base.base.recipe.motion_settings(
            **{**fixed, **{k: v for k, v in explicit.items() if v is not None}},
            prompt=prompt.strip(), steps=auto_number(steps), lr=auto_number(lr), seed=seed, loss=auto_choice(loss),
            min_timestep=None if min_timestep == AUTO_TIMESTEP else min_timestep)

    @classmethod
    def execute(cls, base: LoadedBase, reference, prompt: str, steps: int, lr: float, rank: int, seed: int,
                name: str, save: bool, preview_every: int, loss: str, include_transformer_in: str = AUTO,
                include_feed_forward: str = AUTO, include_temporal_convs: str = AUTO,
                absorber_token_in_prompt: str = AUTO, gradient_checkpointing: bool = False,
                absorber: TrainedAbsorber | None = None, more_clips: TrainingClips | None = None,
                init_lora: MotionLora | None = None, validate_every: int = 0,
                validation_prompts: str = "", min_timestep: int = AUTO_TIMESTEP,
                memory_target_gib: float = 0.0) -> io.NodeOutput:
        with host.engine_call():
            settings = cls.settings(base, prompt, steps, lr, rank, seed, loss, include_transformer_in,
                                    include_feed_forward, include_temporal_convs, absorber_token_in_prompt, init_lora,
                                    min_timestep)
            settings.validate()
            if init_lora is not None:
                check_same_base(f"init_lora '{init_lora.name}'", init_lora.adapter.base_name,
                                init_lora.adapter.base_fingerprint, base)
                stored, stored_settings = absorber_from_file(init_lora.adapter)
                if absorber is None and stored_settings.kind != "none":  # keep training beside its own absorber
                    absorber = TrainedAbsorber(stored, init_lora.adapter.base_name, init_lora.adapter.base_fingerprint,
                                               stored_settings)
            if absorber is not None:
                check_same_base("the absorber", absorber.base_name, absorber.base_fingerprint, base)
            clips = reference_clips(base, reference, settings.prompt, more_clips)
            hooks = training_hooks(settings.steps, cls.hidden.unique_id, "motion", preview_every=preview_every,
                                   validate_every=validate_every,
                                   validation_prompts=tuple(p.strip() for p in validation_prompts.splitlines()))
            previews = ValidationPreviews(hooks)
            device = host.load_for_work(base, host.TRAINING_MEMORY)
            compute = compute_for(base, device, gradient_checkpointing, memory_target_gib)
            trained = train_motion(base.base, clips, settings, absorber.absorber if absorber else None, compute, hooks,
                                   init_lora.temporal if init_lora else None)
            adapter = motion_adapter(base.base, trained.lora, settings, clips, absorber.absorber if absorber else None,
                                     absorber.settings if absorber else None, compute,
                                     (init_lora.name, init_lora.adapter.training) if init_lora else None)
            motion = MotionLora(name=os.path.splitext(paths.lora_file_name(name))[0], adapter=adapter,
                                losses={"absorber": list(absorber.absorber.losses) if absorber else [],
                                        "motion": trained.losses}, preview=trained.preview(base.base.default_fps))
            saved = folders.save_motion_lora(motion.adapter, name, False, motion.preview) if save else ""
        host.settle()
        graph = loss_graph({"motion": trained.losses}, host.intermediate_device())
        text = (f"motion LoRA '{motion.name}' ({base.base.recipe.name} recipe): {settings.steps} steps, "
                f"{describe_motion(settings)}; final loss {final_loss(trained.losses)}")
        text += f"; {len(clips)} clips" if len(clips) > 1 else ""
        text += f"; continued from {init_lora.name}" if init_lora else ""
        if validate_every:
            text += f"; validation samples took {hooks.on_progress.validation_seconds:.1f} s"
        text += memory_note(trained.memory_plan)
        text += f"; saved as {saved}" if saved else ""
        return io.NodeOutput(motion, graph, saved, ui=previews.ui(text, trained.validation, base.base.default_fps))
