"""Training nodes: stage 1 appearance absorber, stage 2 motion T-LoRA (the paper's order)."""
from __future__ import annotations

import os

import numpy as np
from comfy_api.latest import io, ui

from cav_core.adapter_file import AdapterFile
from cav_core.absorber_training import train_absorber
from cav_core.motion_training import train_motion
from cav_core.settings import ABSORBER_KINDS, MOTION_LOSSES, AbsorberSettings, ComputeSettings, MotionSettings
from cav_core.step_loop import Hooks
from cav_core.training import training_record

from .constants import NODE_IDS
from . import folders, host, paths, types
from .convert import image_batch_to_frames, loss_graph
from .values import LoadedBase, MotionLora, TrainedAbsorber, check_same_base

SEED_MAX = 2**31 - 1


def reference_frames(loaded: LoadedBase, reference) -> np.ndarray:
    frames = image_batch_to_frames(reference, "reference")
    loaded.base.check_frame_size(frames.shape[2], frames.shape[1], "the reference video")
    return frames


def compute_for(loaded: LoadedBase, device, gradient_checkpointing: bool = False) -> ComputeSettings:
    return ComputeSettings(device=str(device), mixed_precision=host.mixed_precision_for(device, loaded.base.unet.dtype),
                           gradient_checkpointing=gradient_checkpointing)


def _checkpointing_input() -> io.Boolean.Input:
    # Optional so that API prompts written before it still run.
    return io.Boolean.Input(
        "gradient_checkpointing", default=False, optional=True,
        tooltip="Recompute activations in the backward pass instead of keeping them: the same training in "
                "less GPU memory, each step slower. Measured on a ModelScope-size base in bf16 (16 frames at "
                "256x256, H200): the T-LoRA's peak drops from 12.6 to 4.4 GiB, each step takes 2x as long.")


def final_loss(losses) -> str:
    tail = [v for v in list(losses)[-10:] if np.isfinite(v)]
    return f"{np.mean(tail):.4g}" if tail else "n/a"


def _seed(tooltip: str) -> io.Int.Input:
    # Training seeds stay fixed after a run (no randomize widget), so re-queueing reuses the cache.
    return io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=False, tooltip=tooltip)


class TrainAbsorber(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["train_absorber"],
            display_name=types.display_name("Train Appearance Absorber"),
            category=types.CATEGORY,
            description="Stage 1: learns what the reference LOOKS like (temporal layers off, random crops of "
                        "shuffled frames), so the motion LoRA trained next does not copy its appearance.",
            inputs=[
                types.T2VBase.Input("base", tooltip="The base from Load T2V Base."),
                io.Image.Input("reference", tooltip="Frames of the reference clip (Load Reference Video)."),
                io.Combo.Input("kind", options=[k for k in ABSORBER_KINDS if k != "none"], default="dual",
                               tooltip="slora: a LoRA on the spatial attention layers; ti: a learned token "
                                       "(textual inversion); dual: both (the paper's best)."),
                io.String.Input("appearance_prompt", multiline=True, default="",
                                tooltip="What the frames look like, without motion words, e.g. 'a red square "
                                        "on a white background'."),
                io.Int.Input("steps", default=150, min=1, max=20000,
                             tooltip="Training steps (each a batch of 4 crops)."),
                io.Float.Input("lr", default=1e-4, min=1e-6, max=0.5, step=1e-5, round=1e-6,
                               tooltip="Learning rate of the S-LoRA."),
                io.Float.Input("ti_lr", default=5e-3, min=1e-6, max=0.5, step=1e-4, round=1e-6,
                               tooltip="Learning rate of the textual-inversion token."),
                io.Int.Input("rank", default=4, min=1, max=256, tooltip="Rank of the S-LoRA."),
                io.Float.Input("crop_min", default=0.33, min=0.05, max=1.0, step=0.01,
                               tooltip="Smallest random crop, as a fraction of the frame side."),
                io.Float.Input("crop_max", default=0.67, min=0.05, max=1.0, step=0.01,
                               tooltip="Largest random crop, as a fraction of the frame side."),
                _seed("Seed of the crops, noise and initial weights; the same seed repeats the run."),
                _checkpointing_input(),
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
                gradient_checkpointing: bool = False) -> io.NodeOutput:
        settings = AbsorberSettings(kind=kind, prompt=appearance_prompt.strip(), steps=steps, lr=lr, ti_lr=ti_lr,
                                    rank=rank, crop_range=(crop_min, crop_max), seed=seed)
        hooks = Hooks(on_progress=host.TrainingProgress(steps, cls.hidden.unique_id, "absorber"),
                      should_stop=host.should_stop)
        with host.engine_call():
            settings.validate()
            frames = reference_frames(base, reference)
            device = host.load_for_work(base, host.TRAINING_MEMORY)
            absorber = train_absorber(base.base, frames, settings, compute_for(base, device, gradient_checkpointing),
                                      hooks)
        host.settle()
        result = TrainedAbsorber(absorber, base.name, base.fingerprint, settings)
        graph = loss_graph({"absorber": absorber.losses}, host.intermediate_device())
        text = f"{result.kind} absorber: {steps} steps, final loss {final_loss(absorber.losses)}"
        if absorber.tokens:
            text += f"; token {', '.join(absorber.tokens)}"
        return io.NodeOutput(result, graph, ui=ui.PreviewText(text))


class TrainMotionLora(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["train_motion_lora_v1"],
            display_name=types.display_name("Train Motion T-LoRA"),
            category=types.CATEGORY,
            description="Stage 2: with the absorber frozen, learns a LoRA on the temporal attention layers "
                        "from the ordered reference clip: the reference's MOTION, reusable with any prompt.",
            inputs=[
                types.T2VBase.Input("base", tooltip="The base from Load T2V Base."),
                io.Image.Input("reference", tooltip="Frames of the reference clip (Load Reference Video)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="Caption of the whole reference clip, e.g. 'a red square moving on a "
                                        "white background'. The absorber's token is added when missing."),
                io.Int.Input("steps", default=300, min=1, max=20000,
                             tooltip="Training steps. Camera moves converge fast; body motion needs more."),
                io.Float.Input("lr", default=5e-4, min=1e-6, max=0.5, step=1e-5, round=1e-6,
                               tooltip="Learning rate of the T-LoRA."),
                io.Int.Input("rank", default=4, min=1, max=256, tooltip="Rank of the T-LoRA (the paper uses 4)."),
                _seed("Seed of the noise, timesteps and initial weights; the same seed repeats the run."),
                io.String.Input("name", default="my_motion",
                                tooltip="Name of the motion LoRA (also its file name when saved; reduced to a "
                                        "safe file name)."),
                io.Boolean.Input("save", default=False,
                                 tooltip="Save the finished LoRA (with its absorber kept apart) to "
                                         "models/cav_motion_loras; an existing name gets a number added."),
                io.Int.Input("preview_every", default=25, min=0, max=10000,
                             tooltip="Show the predicted middle frame on the node every N steps (0 = never)."),
                io.Combo.Input("loss", options=list(MOTION_LOSSES), default="mse",
                               tooltip="mse: the paper's noise-prediction loss; debiased: MotionDirector's "
                                       "appearance-debiased temporal loss added."),
                io.Boolean.Input("include_transformer_in", default=True,
                                 tooltip="Also adapt the UNet's first temporal transformer (transformer_in)."),
                io.Boolean.Input("include_feed_forward", default=False,
                                 tooltip="Also adapt the temporal feed-forward layers (more capacity, more "
                                         "risk of learning appearance)."),
                io.Boolean.Input("include_temporal_convs", default=False,
                                 tooltip="Also adapt the temporal convolutions (not the paper's default). On "
                                         "the bundled shapes-world model attention alone cannot learn a path: "
                                         "turn this on there, with rank 16 and 1000 steps as in the demo."),
                io.Boolean.Input("absorber_token_in_prompt", default=True, optional=True,  # older API prompts lack it
                                 tooltip="Put the absorber's token (ti, dual) in this caption. Off: the token is "
                                         "still trained and kept, but the T-LoRA trains beside the absorber's "
                                         "S-LoRA alone."),
                _checkpointing_input(),
                types.Absorber.Input("absorber", optional=True,
                                     tooltip="The appearance absorber of the same reference (Train Appearance "
                                             "Absorber). Without it the motion LoRA also learns the look."),
            ],
            outputs=[
                types.MotionLora.Output(display_name="motion_lora",
                                        tooltip="The motion LoRA, for the stack, Save or Inspect nodes."),
                io.Image.Output(display_name="loss_graph", tooltip="The training loss per step."),
                io.String.Output(display_name="saved_file",
                                 tooltip="File name in models/cav_motion_loras, empty when not saved."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, base: LoadedBase, reference, prompt: str, steps: int, lr: float, rank: int, seed: int,
                name: str, save: bool, preview_every: int, loss: str, include_transformer_in: bool,
                include_feed_forward: bool, include_temporal_convs: bool = False,
                absorber_token_in_prompt: bool = True, gradient_checkpointing: bool = False,
                absorber: TrainedAbsorber | None = None) -> io.NodeOutput:
        settings = MotionSettings(prompt=prompt.strip(), steps=steps, lr=lr, rank=rank, seed=seed,
                                  include_transformer_in=include_transformer_in,
                                  include_feed_forward=include_feed_forward,
                                  include_temporal_convs=include_temporal_convs, loss=loss,
                                  absorber_token_in_prompt=absorber_token_in_prompt)
        hooks = Hooks(on_progress=host.TrainingProgress(steps, cls.hidden.unique_id, "motion"),
                      should_stop=host.should_stop, preview_every=preview_every)
        with host.engine_call():
            settings.validate()
            if absorber is not None:
                check_same_base("the absorber", absorber.base_name, absorber.base_fingerprint, base)
            frames = reference_frames(base, reference)
            device = host.load_for_work(base, host.TRAINING_MEMORY)
            compute = compute_for(base, device, gradient_checkpointing)
            lora, losses = train_motion(base.base, frames, settings, absorber.absorber if absorber else None,
                                        compute, hooks)
            motion = MotionLora(
                name=os.path.splitext(paths.lora_file_name(name))[0],
                adapter=AdapterFile(
                    base_name=base.name, base_fingerprint=base.fingerprint, temporal=lora,
                    spatial=absorber.absorber.spatial if absorber else None,
                    textual_inversion=absorber.absorber.textual_inversion if absorber else None,
                    training=training_record(
                        settings, frames, absorber.settings if absorber else None,
                        absorber.absorber.tokens if absorber else (), compute)),
                losses={"absorber": list(absorber.absorber.losses) if absorber else [], "motion": losses})
            saved = folders.save_motion_lora(motion.adapter, name, overwrite=False) if save else ""
        host.settle()
        curves = {"motion": losses}
        graph = loss_graph(curves, host.intermediate_device())
        text = f"motion LoRA '{motion.name}': {steps} steps, final loss {final_loss(losses)}"
        text += f"; saved as {saved}" if saved else ""
        return io.NodeOutput(motion, graph, saved, ui=ui.PreviewText(text))
