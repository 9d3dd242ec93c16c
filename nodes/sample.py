"""Sample Video: the base plus weighted motion LoRAs (and an optional appearance) -> frames."""
from __future__ import annotations

from fractions import Fraction

from comfy_api.latest import InputImpl, Types, io

from cav_core.sampling import SCHEDULERS, SampleSettings, sample_video

from .constants import NODE_IDS
from . import host, types
from .convert import frames_to_image_batch, image_batch_to_frames
from .values import AppearanceChoice, LoadedBase, MotionLoraStack, check_same_base

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def sample_settings(base, prompt: str, negative: str, seed: int, steps: int, cfg: float, frames: int, width: int,
                    height: int, scheduler: str, noise_prior: float) -> SampleSettings:
    """The node's widgets as engine settings; 0 for frames / width / height means the base's default."""
    width, height = (width or base.default_size[0]), (height or base.default_size[1])
    base.check_frame_size(width, height, "the requested video size")
    settings = SampleSettings(prompt=prompt, negative=negative, seed=seed, steps=steps, cfg=cfg,
                              frames=frames or base.default_frames, size=(width, height),
                              scheduler=scheduler, noise_prior=noise_prior)
    settings.validate()
    return settings


class SampleVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_IDS["sample"],
            display_name=types.display_name("Sample Video"),
            category=types.CATEGORY,
            description="Generates a clip from a prompt with the stacked motion LoRAs (absorbers are not used "
                        "here unless given as an appearance). Feed frames + fps to Create Video or VHS Video "
                        "Combine, or the video to Save Video.",
            inputs=[
                types.T2VBase.Input("base", tooltip="The base from Load T2V Base (the one the LoRAs were trained on)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What to show, e.g. 'a green triangle moving on a black background'. "
                                        "The learned motion comes from the LoRAs, not the words."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="What to steer away from (classifier-free guidance)."),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Seed of the starting noise (drawn on the CPU: same video on any device)."),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Denoising steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Guidance scale: how strongly the prompt is followed."),
                io.Int.Input("frames", default=0, min=0, max=1024,
                             tooltip="Frames to generate (0 = the base's, from its recipe)."),
                io.Int.Input("width", default=0, min=0, max=4096, step=8,
                             tooltip="Width in pixels (0 = the base's, from its recipe)."),
                io.Int.Input("height", default=0, min=0, max=4096, step=8,
                             tooltip="Height in pixels (0 = the base's, from its recipe)."),
                io.Combo.Input("scheduler", options=list(SCHEDULERS), default="ddim",
                               tooltip="ddim, dpm++ (DPM-Solver++, good in fewer steps) or euler."),
                io.Float.Input("fps", default=0.0, min=0.0, max=120.0, step=0.5,
                               tooltip="Frame rate given to the video output (0 = the base's, from its recipe)."),
                io.Float.Input("noise_prior", default=0.0, min=0.0, max=0.5, step=0.05,
                               tooltip="Mix the noised reference into the start noise (0 = off) for closer "
                                       "layout following; needs the reference input."),
                types.MotionLoraStack.Input("motion_loras", optional=True,
                                            tooltip="Weighted motion LoRAs (Motion LoRA Stack / Load Motion "
                                                    "LoRA). Without them the plain base is sampled."),
                types.Appearance.Input("appearance", optional=True,
                                       tooltip="Optional S-LoRA / token from Apply Appearance."),
                io.Image.Input("reference", optional=True,
                               tooltip="Reference frames, only used by noise_prior."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The generated frames (IMAGE batch)."),
                io.Float.Output(display_name="fps", tooltip="The frame rate, for Create Video / Video Combine."),
                io.Video.Output(display_name="video", tooltip="The frames as a VIDEO, for Save Video."),
            ],
        )

    @classmethod
    def execute(cls, base: LoadedBase, prompt: str, negative: str, seed: int, steps: int, cfg: float,
                frames: int, width: int, height: int, scheduler: str, fps: float, noise_prior: float,
                motion_loras: MotionLoraStack | None = None, appearance: AppearanceChoice | None = None,
                reference=None) -> io.NodeOutput:
        stack = motion_loras or MotionLoraStack()
        with host.engine_call():
            stack.check_fits(base)
            if appearance is not None:
                check_same_base(appearance.source, appearance.base_name, appearance.base_fingerprint, base)
            settings = sample_settings(base.base, prompt, negative, seed, steps, cfg, frames, width, height,
                                       scheduler, noise_prior)
            ref = image_batch_to_frames(reference, "reference") if reference is not None else None
            w, h = settings.size
            device = host.load_for_work(base, host.sampling_memory(settings.frames, w, h,
                                                                   base.base.vae_scale_factor))
            video = sample_video(base.base, settings, stack.weighted(),
                                 appearance.to_engine() if appearance else None, device=device,
                                 on_step=host.StepProgress(steps), should_stop=host.should_stop,
                                 reference_frames=ref)
        fps = fps or base.base.default_fps
        images = frames_to_image_batch(video, host.intermediate_device())
        clip = InputImpl.VideoFromComponents(Types.VideoComponents(
            images=images, audio=None, frame_rate=Fraction(fps).limit_denominator(1000)))
        return io.NodeOutput(images, float(fps), clip)
