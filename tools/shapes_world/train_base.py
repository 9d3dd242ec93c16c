"""Train the bundled shapes-world text-to-video model from scratch on synthetic clips.

    python -m tools.shapes_world.train_base --work runs/base --out cav_core/shapes_world/model

Phase 1 trains the VAE on single frames; phase 2 trains the UNet3D and the text encoder together
on (clip, caption) pairs with the standard noise-prediction loss. Every step draws its data from a
generator seeded by (seed, phase, step), so a run resumed from a checkpoint is the same run.
Checkpoints (safetensors, no pickle) are written atomically every ``--checkpoint-every`` steps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from cav_core import (diffusion_target, module_tensors, read_checkpoint, restore_optimizer, save_checkpoint,
                      temporal_convolutions, temporal_layers_bypassed)
from cav_core.shapes_world import architecture as arch
from cav_core.shapes_world.scenes import GENERIC_MOTION_PHRASE, random_scene, render


def _frames_to_tensor(clips: np.ndarray) -> torch.Tensor:
    """uint8 [B, F, H, W, 3] -> float [B*F, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(clips).float().div(127.5).sub(1)
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).contiguous()


def _vae_batch(rng: np.random.Generator, size: int) -> torch.Tensor:
    """``size`` single frames for the VAE phases: 4 random frames from each of size/4 random clips."""
    clips = np.stack([render(random_scene(rng)) for _ in range(size // 4)])
    return _frames_to_tensor(clips[:, rng.choice(arch.FRAMES, 4, replace=False)])


UNCONDITIONAL_SHARE = 0.1  # empty captions, for classifier-free guidance (clips and still frames alike)


def _caption_for_training(scene, rng: np.random.Generator) -> str:
    r = rng.random()
    if r < UNCONDITIONAL_SHARE:
        return ""
    if r < 0.7 or scene.motion == "static":
        return scene.caption()
    if r < 0.85:
        return scene.caption(GENERIC_MOTION_PHRASE)
    return scene.caption("")


def _image_caption_for_training(scene, rng: np.random.Generator) -> str:
    """A still frame's caption: the appearance only (no motion words), or empty for guidance."""
    return "" if rng.random() < UNCONDITIONAL_SHARE else scene.caption("")


def _as_single_frames(lat: torch.Tensor, text: torch.Tensor, weights: torch.Tensor | None):
    """[B, C, F, h, w] clips -> B*F one-frame clips, each with its clip's caption.

    Image steps train the UNet with its temporal layers bypassed, as ModelScope's UNet is its
    image model (Stable Diffusion's) plus temporal layers. Without them this from-scratch UNet's
    spatial path renders nothing on its own, and stage 1 of the method, which trains the absorber
    with the temporal layers bypassed, has no image model to absorb into."""
    b, _, f, h, w = lat.shape

    def one_frame_clips(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(b * f, x.shape[1], 1, h, w)

    return (one_frame_clips(lat), text.repeat_interleave(f, dim=0),
            None if weights is None else one_frame_clips(weights))


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # initial weights
    tokenizer = arch.build_tokenizer()
    vae, unet = arch.build_vae(), arch.build_unet()
    text_encoder = arch.build_text_encoder(len(tokenizer))
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    # --text-lr-scale 0 freezes the text encoder, as ModelScope's CLIP is frozen: no gradient, so
    # it neither moves nor counts in the clipping norm (clip_grad_norm_ skips absent gradients).
    frozen_text = args.text_lr_scale == 0
    params = list(unet.parameters()) + list(text_encoder.parameters())
    unet_opt = torch.optim.AdamW([{"params": list(unet.parameters()), "lr_scale": 1.0},
                                  {"params": list(text_encoder.parameters()), "lr_scale": args.text_lr_scale}],
                                 lr=args.lr, weight_decay=1e-2)
    scheduler = arch.build_scheduler(args.zero_snr)
    ckpt = os.path.join(args.work, "checkpoint.safetensors")
    phase, step, scaling, log = "vae", 0, 1.0, []
    if not os.path.exists(ckpt) and args.init_model:
        scaling = _init_from_model(args.init_model, vae, unet, text_encoder)
        phase = "unet"  # phases 1 and 3 are the folder's; a resume before the first checkpoint redoes this
    if os.path.exists(ckpt):
        tensors, meta = read_checkpoint(ckpt)
        phase, step, scaling = meta["phase"], int(meta["step"]), float(meta["scaling"])
        log = json.loads(meta["log"])
        for name, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
            module.load_state_dict(module_tensors(tensors, name))
        restore_optimizer(vae_opt, "vae_opt", tensors, meta)
        restore_optimizer(unet_opt, "unet_opt", tensors, meta)
        print(f"resumed at phase {phase} step {step}", flush=True)
    unet_opt.param_groups[1]["lr_scale"] = args.text_lr_scale  # the command's, also on resume

    def save():
        tensors = {}
        for name, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
            tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        save_checkpoint(ckpt, tensors, {"phase": phase, "step": str(step), "scaling": str(scaling),
                                        "log": json.dumps(log)}, {"vae_opt": vae_opt, "unet_opt": unet_opt})

    start = time.time()
    if phase == "vae":
        vae.train()
        while step < args.vae_steps:
            frames = _vae_batch(np.random.default_rng([args.seed, 1, step]), args.vae_batch)
            posterior = vae.encode(frames).latent_dist
            recon = vae.decode(posterior.sample(generator=torch.Generator().manual_seed(step))).sample
            rec_loss = ((recon - frames).pow(2) * _object_weights(frames, args.object_weight)).mean()
            loss = rec_loss + args.kl_weight * posterior.kl().mean()
            vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            vae_opt.step()
            step += 1
            if step % 50 == 0:
                log.append({"phase": "vae", "step": step, "loss": float(rec_loss)})
                print(f"vae step {step}/{args.vae_steps} recon mse {rec_loss.item():.5f} "
                      f"({time.time() - start:.0f}s)", flush=True)
            if step % args.checkpoint_every == 0:
                save()
        # Scale latents to unit variance, as Stable Diffusion's VAE does.
        with torch.no_grad():
            rng = np.random.default_rng([args.seed, 2])
            frames = _frames_to_tensor(np.stack([render(random_scene(rng)) for _ in range(32)]))
            scaling = float(1.0 / vae.encode(frames).latent_dist.mean.std())
        phase, step = "unet", 0
        if args.init_unet:
            _init_from(args.init_unet, unet, text_encoder)
        save()

    vae.eval().requires_grad_(False)
    if args.causal_temporal_conv:
        _keep_temporal_convs_causal(unet)
    unet.train()
    if frozen_text:
        text_encoder.requires_grad_(False).eval()
    else:
        text_encoder.train()
    while step < args.steps:
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.5 + 0.5 * math.cos(math.pi * step / args.steps))
        for group in unet_opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        rng = np.random.default_rng([args.seed, 3, step])
        scenes = [random_scene(rng) for _ in range(args.batch)]
        captions = [_caption_for_training(s, rng) for s in scenes]
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        torch.manual_seed(int(rng.integers(2**31)))  # the UNet's temporal-conv dropout: same on resume
        # Drawn only when asked for, so runs without --image-share keep their exact data.
        image_step = bool(args.image_share) and rng.random() < args.image_share
        if image_step:
            captions = [_image_caption_for_training(s, rng) for s in scenes]
        with torch.no_grad():
            frames = _frames_to_tensor(np.stack([render(s) for s in scenes]))
            lat = vae.encode(frames).latent_dist.sample(generator=gen) * scaling
            lat = lat.reshape(args.batch, arch.FRAMES, *lat.shape[1:]).permute(0, 2, 1, 3, 4)
        ids = tokenizer(captions, padding="max_length", max_length=arch.TOKEN_LENGTH,
                        truncation=True, return_tensors="pt").input_ids
        text = text_encoder(ids)[0]
        weights = None
        if args.unet_object_weight:
            weights = _latent_object_weights(frames, args.unet_object_weight, lat.shape)
        if image_step:
            lat, text, weights = _as_single_frames(lat, text, weights)
        noise = torch.randn(lat.shape, generator=gen)
        t = _training_timesteps(scheduler.config.num_train_timesteps, len(lat), args.high_noise_share, gen)
        with temporal_layers_bypassed(unet) if image_step else contextlib.nullcontext():
            pred = unet(scheduler.add_noise(lat, noise, t), t, text).sample
        target = diffusion_target(scheduler, lat, noise, t)  # v with --zero-snr, else epsilon
        loss = _denoising_loss(pred, target, weights, args.motion_weight)
        unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        unet_opt.step()
        step += 1
        if step % 25 == 0:
            log.append({"phase": "unet", "step": step, "loss": loss.item()})
            print(f"unet step {step}/{args.steps} loss {loss.item():.4f} lr {lr:.2e} "
                  f"({time.time() - start:.0f}s)", flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps:
            save()
        if args.export_every and step % args.export_every == 0:
            export(args.out, tokenizer, text_encoder, vae, unet, scaling, args, step, log)
    train_decoder(args)
    export(args.out, tokenizer, text_encoder, vae, unet, scaling, args, step, log)


def train_decoder(args) -> None:
    """Phase 3: sharpen the VAE decoder with the encoder frozen.

    The encoder (and so every latent the UNet learns from) is fixed after phase 1, so this phase
    depends only on phase 1 and may run beside phase 2. Resumable like the others.
    """
    torch.set_num_threads(args.threads)
    tensors, _ = read_checkpoint(os.path.join(args.work, "checkpoint.safetensors"))
    vae = arch.build_vae()
    vae.load_state_dict(module_tensors(tensors, "vae"))
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.vae_lr, weight_decay=0.0)
    path = os.path.join(args.work, "decoder.safetensors")
    step = 0
    if os.path.exists(path):
        saved, meta = read_checkpoint(path)
        vae.load_state_dict(module_tensors(saved, "vae"))
        restore_optimizer(opt, "opt", saved, meta)
        step = int(meta["step"])
    start = time.time()
    while step < args.decoder_steps:
        lr = args.vae_lr * (0.5 + 0.5 * math.cos(math.pi * step / args.decoder_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        frames = _vae_batch(np.random.default_rng([args.seed, 4, step]), args.vae_batch)
        with torch.no_grad():
            latents = vae.encode(frames).latent_dist.mean
        error = (vae.decode(latents).sample - frames).pow(2)
        loss = (error * _object_weights(frames, args.object_weight)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"decoder step {step}/{args.decoder_steps} recon mse {loss.item():.5f} "
                  f"({time.time() - start:.0f}s)", flush=True)
        if step % args.checkpoint_every == 0 or step == args.decoder_steps:
            save_checkpoint(path, {f"vae.{k}": v for k, v in vae.state_dict().items()}, {"step": str(step)},
                            {"opt": opt})


def _init_from(path: str, unet, text_encoder) -> None:
    """Start phase 2 from another run's UNet and text encoder (a checkpoint.safetensors of this
    script), e.g. after retraining the VAE: what the UNet learned about text and motion carries
    over, and it only has to adapt to the new latents."""
    tensors, _ = read_checkpoint(path)
    for name, module in (("unet", unet), ("text_encoder", text_encoder)):
        module.load_state_dict(module_tensors(tensors, name))
    print(f"phase 2 starts from the UNet and text encoder in {path}", flush=True)


def _init_from_model(folder: str, vae, unet, text_encoder) -> float:
    """Start phase 2 from an exported model folder (e.g. the bundled one, whose checkpoints are
    not kept): its VAE, UNet and text encoder, and its latent scaling, which is returned."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel

    donor_vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"))
    vae.load_state_dict(donor_vae.state_dict())
    unet.load_state_dict(UNet3DConditionModel.from_pretrained(os.path.join(folder, "unet")).state_dict())
    text_encoder.load_state_dict(CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).state_dict())
    print(f"phase 2 starts from the model in {folder}", flush=True)
    return float(donor_vae.config.scaling_factor)


def _keep_temporal_convs_causal(unet) -> None:
    """Zero the look-ahead tap of every temporal convolution and hold it at zero while training.

    diffusers' temporal convolutions are Conv3d with a (3, 1, 1) kernel and padding 1 in time, so
    tap 2 reads frame f + 1. Without it each frame sees only itself and the past, and the zero
    padding before frame 0 becomes a clock that cannot be mistaken for the end of the clip: the
    UNet cannot be time-symmetric. The result is still a plain ``UNet3DConditionModel`` (the taps
    are stored as zeros), so everything that loads it is unchanged.
    """
    for module in temporal_convolutions(unet).values():
        with torch.no_grad():
            module.weight[:, :, 2].zero_()
        mask = torch.ones_like(module.weight)
        mask[:, :, 2] = 0
        module.weight.register_hook(lambda grad, mask=mask: grad * mask)


def _training_timesteps(num_train_timesteps: int, batch: int, high_noise_share: float,
                        gen: torch.Generator) -> torch.Tensor:
    """Uniform timesteps, except that a ``high_noise_share`` of them (in expectation) come from the
    noisiest 30 %.

    Motion from text alone is decided there: the bundled base's clean-clip estimate from pure
    noise was static for every pan caption, while from t <= 600 it copied the noisy clip's motion.
    (Tried in session 4 without effect on direction; see MODEL_CARD.md.)
    """
    t = torch.randint(0, num_train_timesteps, (batch,), generator=gen)
    if high_noise_share:
        high = torch.randint(int(0.7 * num_train_timesteps), num_train_timesteps, (batch,), generator=gen)
        t = torch.where(torch.rand(batch, generator=gen) < high_noise_share, high, t)
    return t


def _denoising_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                    motion_weight: float) -> torch.Tensor:
    """MSE over [B, C, F, h, w], optionally weighted per cell, plus ``motion_weight`` times the
    same MSE on the part of the error that changes across frames.

    The error's per-cell mean over frames is appearance; what is left is motion, a small share of
    a plain MSE. (Tried in session 4 without effect on direction; see MODEL_CARD.md.)
    """
    error = pred - target
    weights = 1.0 if weights is None else weights
    loss = (error.pow(2) * weights).mean()
    if motion_weight:
        varying = error - error.mean(dim=2, keepdim=True)
        loss = loss + motion_weight * (varying.pow(2) * weights).mean()
    return loss


def _object_weights(frames: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [N, 1, H, W]: 1 on the background, 1 + ``weight`` on the object.

    The object covers about 5 % of a frame, so a plain MSE lets the VAE trade its colour away (the
    first model's latents kept little more than brightness: green on white came back dark blue);
    the weight makes the object's pixels count. The background is the frame's corner colour
    (scenes have plain backgrounds).
    """
    corner = frames[:, :, :1, :1]
    on_object = (frames - corner).abs().amax(1, keepdim=True) > 0.02
    return 1.0 + weight * on_object.float()


def _latent_object_weights(frames: torch.Tensor, weight: float, shape: torch.Size) -> torch.Tensor:
    """``_object_weights`` pooled to the latent grid, shaped [B, 1, F, h, w] like the latents.

    Same reason as for the VAE: with a plain loss the object's colour and shape are ~5 % of the
    target, and the UNet learned backgrounds from the text long before object colours."""
    b, _, f, h, w = shape
    pooled = F.adaptive_avg_pool2d(_object_weights(frames, weight), (h, w))
    return pooled.reshape(b, f, 1, h, w).permute(0, 2, 1, 3, 4)


def _decoder_weights(work: str) -> dict | None:
    path = os.path.join(work, "decoder.safetensors")
    if not os.path.exists(path):
        return None
    return module_tensors(read_checkpoint(path)[0], "vae")


def export(out, tokenizer, text_encoder, vae, unet, scaling, args, step, log) -> None:
    """Write the ModelScope-style diffusers folder (what ``--base toy`` loads)."""
    from diffusers import DDPMScheduler  # noqa: F401  (scheduler class is recorded by name)

    os.makedirs(out, exist_ok=True)
    decoder = _decoder_weights(args.work)
    if decoder is not None:  # phase 3's sharper decoder; the encoder is the same
        vae = arch.build_vae()
        vae.load_state_dict(decoder)
    vae.register_to_config(scaling_factor=scaling)
    unet.save_pretrained(os.path.join(out, "unet"))
    vae.save_pretrained(os.path.join(out, "vae"))
    text_encoder.save_pretrained(os.path.join(out, "text_encoder"))
    tokenizer.save_pretrained(os.path.join(out, "tokenizer"))
    arch.build_scheduler(args.zero_snr).save_pretrained(os.path.join(out, "scheduler"))
    index = {
        "_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    record = {"unet_steps": step, "settings": vars(args), "log": log}
    if args.init_model:  # it continued another folder: keep how that one was made, when it says
        init_log = os.path.join(args.init_model, "training_log.json")
        if os.path.exists(init_log):
            with open(init_log) as f:
                record["init_model_log"] = json.load(f)
    with open(os.path.join(out, "training_log.json"), "w") as f:
        json.dump(record, f)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder for checkpoints (resumes if one is there)")
    p.add_argument("--out", required=True, help="where the diffusers-format model is written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=500)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--export-every", type=int, default=0)
    p.add_argument("--decoder-steps", type=int, default=800)
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="phases 1 and 3: extra loss weight on the object's pixels (see _object_weights)")
    p.add_argument("--unet-object-weight", type=float, default=0.0,
                   help="phase 2: extra loss weight on latents covering the object (may change on resume)")
    p.add_argument("--motion-weight", type=float, default=0.0,
                   help="phase 2: extra loss weight on the frame-varying part of the error (see _denoising_loss)")
    p.add_argument("--high-noise-share", type=float, default=0.0,
                   help="phase 2: share of timesteps drawn from the noisiest 30%% (see _training_timesteps)")
    p.add_argument("--text-lr-scale", type=float, default=1.0,
                   help="phase 2: the text encoder's learning rate as a multiple of --lr; 0 freezes it (no "
                   "gradient), as ModelScope's text encoder is frozen. Read on resume too")
    p.add_argument("--image-share", type=float, default=0.0,
                   help="phase 2: share of steps trained on still frames with the temporal layers bypassed and "
                   "appearance captions, so the spatial path alone is an image model (as the method's stage 1 "
                   "assumes)")
    p.add_argument("--causal-temporal-conv", action="store_true",
                   help="phase 2: temporal convolutions see no future frame (see _keep_temporal_convs_causal)")
    p.add_argument("--init-model", help="start phase 2 from an exported model folder: skips phase 1, and phase 3 "
                   "continues that folder's decoder (use --decoder-steps 0 to keep it)")
    p.add_argument("--init-unet", help="start phase 2 from this checkpoint.safetensors' UNet and text encoder")
    p.add_argument("--only-decoder", action="store_true",
                   help="run phase 3 alone (needs phase 1 done); it may run beside phase 2")
    p.add_argument("--zero-snr", action="store_true",
                   help="zero-terminal-SNR betas with v-prediction (see MODEL_CARD.md); may continue an epsilon run")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    train_decoder(args) if args.only_decoder else train(args)


if __name__ == "__main__":
    main()
