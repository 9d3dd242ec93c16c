"""What a T-LoRA training step keeps for backward: the tensors autograd saves, by kind of layer and by block.

    python -m tools.bench.saved_activations            # the CPU benchmark's base, 16 frames at 128x128
    python -m tools.bench.saved_activations --small    # checks the script

One forward of the benchmark's UNet with the default T-LoRA injected and only its parameters
trainable, under ``torch.autograd.graph.saved_tensors_hooks``: each saved tensor's storage is counted
once, against the innermost module running when it was saved. Weights that autograd keeps (frozen
layers keep theirs to pass gradients back) are counted apart, since they are resident anyway. The
forward runs as training runs it on the CPU (``lean_backward``, temporal convolutions as conv2d); the
total with frozen layers keeping all that autograd saves is printed beside it.
"""
from __future__ import annotations

import argparse
import collections
import tempfile

MIB = 2 ** 20


def saved_by_module(unet, *inputs) -> tuple[collections.Counter, int]:
    """Bytes of activations saved for backward per module name, and bytes of saved weights."""
    import torch

    names = {module: name for name, module in unet.named_modules()}
    running: list[str] = []
    handles = []

    def enter(module, *_):
        running.append(names[module])

    def leave(module, *_):  # a forward hook that returned something would replace the output
        running.pop()

    for module in names:
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    weights = {p.untyped_storage().data_ptr() for p in unet.parameters()}
    seen: set[int] = set()
    by_module: collections.Counter = collections.Counter()
    weight_bytes = 0

    def pack(tensor):
        nonlocal weight_bytes
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            if storage.data_ptr() in weights:
                weight_bytes += storage.nbytes()
            else:
                by_module[running[-1] if running else ""] += storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            unet(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return by_module, weight_bytes


def report(unet, by_module: collections.Counter, weight_bytes: int, top: int = 12) -> str:
    modules = dict(unet.named_modules())
    kinds: collections.Counter = collections.Counter()
    blocks: collections.Counter = collections.Counter()
    for name, size in by_module.items():
        kinds[type(modules[name]).__name__] += size
        blocks[".".join(name.split(".")[:2]) if name.startswith(("down_blocks", "up_blocks")) else
               name.split(".")[0] or "(top level)"] += size
    total = sum(by_module.values())
    lines = [f"activations saved for backward: {total / MIB:.0f} MiB "
             f"(weights kept besides: {weight_bytes / MIB:.0f} MiB)",
             "", "| layer kind | MiB | share |", "|---|---|---|"]
    lines += [f"| {k} | {v / MIB:.0f} | {v / total:.0%} |" for k, v in kinds.most_common(top)]
    lines += ["", "| block | MiB | share |", "|---|---|---|"]
    lines += [f"| {k} | {v / MIB:.0f} | {v / total:.0%} |" for k, v in blocks.most_common(top)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a narrow base (checks the script, measures nothing)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args(argv)
    import torch

    from cav_core import Recipe, inject_lora, load_base
    from cav_core.compute import temporal_convs_as_2d
    from cav_core.lean_backward import lean_backward
    from tools.bench.cpu_cost import PROMPT, build_base_folder

    with tempfile.TemporaryDirectory() as folder:
        base = load_base(build_base_folder(folder, args.small))
    unet = base.unet
    settings = Recipe().motion_settings(prompt=PROMPT)
    inject_lora(unet, "bench", settings.targets(unet), settings.rank, float(settings.alpha or settings.rank), seed=0)
    for name, param in unet.named_parameters():
        param.requires_grad_("lora_" in name)
    side = args.size // base.vae_scale_factor
    latents = torch.randn(1, unet.config.in_channels, args.frames, side, side)
    text = torch.randn(1, base.tokenizer.model_max_length, unet.config.cross_attention_dim)
    inputs = latents, torch.tensor([500]), text
    with temporal_convs_as_2d(unet, "cpu"):
        all_saved = sum(saved_by_module(unet, *inputs)[0].values())
    with temporal_convs_as_2d(unet, "cpu", lean_backward=True), lean_backward(unet):
        by_module, weight_bytes = saved_by_module(unet, *inputs)
    print(f"{args.frames} frames at {args.size}x{args.size}, fp32, the default T-LoRA "
          f"(with frozen layers keeping all that autograd saves: {all_saved / MIB:.0f} MiB)\n")
    print(report(unet, by_module, weight_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
