"""Write a base-training run as the ModelScope-style diffusers folder that ``--base toy`` loads."""
from __future__ import annotations

import json
import os

from cav_core.shapes_world import architecture as arch

from .base_decoder import decoder_weights
from .base_run import BaseRun

MODEL_INDEX = {
    "_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
    "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


MACHINE_PATHS = ("work", "out")  # where the run lived on the machine that made it: not how it was made


def recorded_settings(args) -> dict:
    """The command's settings as the log keeps them: every training setting, the folder a run
    continued by its name only, and none of the making machine's working paths."""
    settings = {k: v for k, v in vars(args).items() if k not in MACHINE_PATHS}
    for key in ("init_model", "init_unet"):
        if settings.get(key):
            settings[key] = os.path.basename(os.path.normpath(settings[key]))
    return settings


def export(out: str, run: BaseRun, args) -> None:
    """The run's models (the VAE with phase 3's decoder once it has one), its scheduler and
    ``training_log.json``: the UNet steps, the command's settings and the loss log."""
    os.makedirs(out, exist_ok=True)
    vae = run.vae
    decoder = decoder_weights(args.work)
    if decoder is not None:  # phase 3's sharper decoder; the encoder is the same
        vae = arch.build_vae()
        vae.load_state_dict(decoder)
    vae.register_to_config(scaling_factor=run.scaling)
    run.unet.save_pretrained(os.path.join(out, "unet"))
    vae.save_pretrained(os.path.join(out, "vae"))
    run.text_encoder.save_pretrained(os.path.join(out, "text_encoder"))
    run.tokenizer.save_pretrained(os.path.join(out, "tokenizer"))
    arch.build_scheduler(args.zero_snr).save_pretrained(os.path.join(out, "scheduler"))
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(MODEL_INDEX, f, indent=2)
    record = {"unet_steps": run.step, "settings": recorded_settings(args), "log": run.log}
    if args.init_model:  # it continued another folder: keep how that one was made, when it says
        init_log = os.path.join(args.init_model, "training_log.json")
        if os.path.exists(init_log):
            with open(init_log) as f:
                record["init_model_log"] = json.load(f)
    with open(os.path.join(out, "training_log.json"), "w") as f:
        json.dump(record, f)
