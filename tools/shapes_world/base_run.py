"""One base-training run's models, optimizers and progress, and its checkpoint in the work folder."""
from __future__ import annotations

import json
import os

import torch

from cav_core import module_tensors, read_checkpoint, restore_optimizer, save_checkpoint
from cav_core.shapes_world import architecture as arch

CHECKPOINT_NAME = "checkpoint.safetensors"


class BaseRun:
    """The tokenizer, VAE, UNet and text encoder being trained, their two optimizers (the VAE's for
    phase 1; the UNet's and text encoder's for phase 2) and where the run stands: ``phase``
    ("vae" or "unet"), ``step`` within it, the latent ``scaling`` and the loss ``log``.
    """

    def __init__(self, args):
        torch.manual_seed(args.seed)  # initial weights
        self.tokenizer = arch.build_tokenizer()
        self.vae, self.unet = arch.build_vae(), arch.build_unet()
        self.text_encoder = arch.build_text_encoder(len(self.tokenizer))
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        self.unet_opt = torch.optim.AdamW(
            [{"params": list(self.unet.parameters()), "lr_scale": 1.0},
             {"params": list(self.text_encoder.parameters()), "lr_scale": args.text_lr_scale}],
            lr=args.lr, weight_decay=1e-2)
        self.path = os.path.join(args.work, CHECKPOINT_NAME)
        self.phase, self.step, self.scaling, self.log = "vae", 0, 1.0, []

    def modules(self) -> dict:
        return {"vae": self.vae, "unet": self.unet, "text_encoder": self.text_encoder}

    def save(self) -> None:
        tensors = {f"{name}.{k}": v for name, module in self.modules().items()
                   for k, v in module.state_dict().items()}
        meta = {"phase": self.phase, "step": str(self.step), "scaling": str(self.scaling),
                "log": json.dumps(self.log)}
        save_checkpoint(self.path, tensors, meta, {"vae_opt": self.vae_opt, "unet_opt": self.unet_opt})

    def resume(self) -> bool:
        """Continue from the work folder's checkpoint, if there is one."""
        if not os.path.exists(self.path):
            return False
        tensors, meta = read_checkpoint(self.path)
        self.phase, self.step, self.scaling = meta["phase"], int(meta["step"]), float(meta["scaling"])
        self.log = json.loads(meta["log"])
        self._load_modules(tensors, self.modules())
        restore_optimizer(self.vae_opt, "vae_opt", tensors, meta)
        restore_optimizer(self.unet_opt, "unet_opt", tensors, meta)
        print(f"resumed at phase {self.phase} step {self.step}", flush=True)
        return True

    def start_unet_from_checkpoint(self, path: str) -> None:
        """Start phase 2 from another run's UNet and text encoder (a checkpoint of this trainer),
        e.g. after retraining the VAE: what the UNet learned about text and motion carries over,
        and it only has to adapt to the new latents."""
        self._load_modules(read_checkpoint(path)[0], {"unet": self.unet, "text_encoder": self.text_encoder})
        print(f"phase 2 starts from the UNet and text encoder in {path}", flush=True)

    def start_from_model(self, folder: str) -> None:
        """Start phase 2 from an exported model folder (e.g. the bundled one, whose checkpoints are
        not kept): its VAE, UNet and text encoder, and its latent scaling."""
        from diffusers import AutoencoderKL, UNet3DConditionModel
        from transformers import CLIPTextModel

        donor_vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"))
        self.vae.load_state_dict(donor_vae.state_dict())
        self.unet.load_state_dict(UNet3DConditionModel.from_pretrained(os.path.join(folder, "unet")).state_dict())
        self.text_encoder.load_state_dict(
            CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).state_dict())
        self.scaling = float(donor_vae.config.scaling_factor)
        self.phase = "unet"  # phases 1 and 3 are the folder's; a resume before the first checkpoint redoes this
        print(f"phase 2 starts from the model in {folder}", flush=True)

    @staticmethod
    def _load_modules(tensors: dict, modules: dict) -> None:
        for name, module in modules.items():
            module.load_state_dict(module_tensors(tensors, name))
