"""What the memory target does to a T-LoRA step at ModelScope size, measured on the CPU or a CUDA GPU.

    LD_PRELOAD=libtcmalloc_minimal.so.4 python -m tools.bench.memory_target --out docs/bench/memory_target.md
    python -m tools.bench.memory_target --device cuda --out memory_target_cuda.md   # on a GPU
    python -m tools.bench.memory_target --small      # checks the script

The first takes about 10 minutes on 2 cores, with nothing else running.

The UNet is ModelScope 1.7B's (random init, bf16 weights, bf16 autocast) with the paper's T-LoRA, a step
of 16 frames at 256x256, as training runs it (lean backward, merged-weight LoRAs where they qualify).
For each configuration: the plan's estimate of the step's peak (``selective_checkpointing``), the
measured peak of a real step (the UNet's weights and buffers, plus the most memory the step allocated
above what was allocated as it started) and its step time. On the CPU the allocation is read from
tcmalloc's counter, so preload tcmalloc; on a GPU from PyTorch's CUDA allocator, which also gives the
most it reserved from the device during the step (its cache included: what the device must have free).
The configurations' steps alternate round by round in one process, so that the machine's drift falls on
all alike; each time is the median of the rounds, and its ratio is against the row without a target.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import statistics
import threading
import time

import torch

GIB = 2 ** 30


class AllocatedPeak:
    """The peak of tcmalloc's allocated bytes while the block runs (None where tcmalloc is not loaded)."""
    reserved: int | None = None  # tcmalloc's cache is not counted apart

    def __init__(self):
        try:
            self._get = ctypes.CDLL(None).MallocExtension_GetNumericProperty
        except AttributeError:
            self._get = None
        else:
            self._get.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        self.peak: int | None = None
        self.start: int | None = None

    def _now(self) -> int:
        value = ctypes.c_size_t()
        self._get(b"generic.current_allocated_bytes", ctypes.byref(value))
        return value.value

    @contextlib.contextmanager
    def watching(self):
        if self._get is None:
            yield
            return
        self.start = self.peak = self._now()
        done = threading.Event()

        def poll():  # the step's operations release the GIL; large tensors live far longer than a poll
            while not done.is_set():
                self.peak = max(self.peak, self._now())
                time.sleep(0.0005)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            yield
        finally:
            done.set()
            poller.join()


class CudaPeak:
    """The peak of PyTorch's CUDA allocator while the block runs: bytes allocated, and bytes reserved from
    the device (allocated plus the allocator's cache of freed blocks)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak: int | None = None
        self.start: int | None = None
        self.reserved: int | None = None

    @contextlib.contextmanager
    def watching(self):
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.start = torch.cuda.memory_allocated(self.device)
        yield
        torch.cuda.synchronize(self.device)
        self.peak = torch.cuda.max_memory_allocated(self.device)
        self.reserved = torch.cuda.max_memory_reserved(self.device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a narrow UNet (checks the script, measures nothing)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--targets", default="6,5,4", help="memory targets (GiB) to plan for, besides none")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA device (cuda, cuda:1)")
    p.add_argument("--out", help="also write the table here (markdown)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    from cav_core import MotionSettings, inject_lora
    from cav_core.compute import autocast, blocks_checkpointed, checkpointable_blocks
    from cav_core.lean_backward import lean_backward
    from cav_core.merged_weight import merged_weight_loras
    from cav_core.selective_checkpointing import plan_memory, training_forward
    from tools.bench.cpu_cost import cpu_description
    from tools.bench.modelscope_cost import build_base

    base = build_base(device, torch.bfloat16, args.small)
    unet = base.unet
    settings = MotionSettings(prompt="a red square moving")
    inject_lora(unet, "motion", settings.targets(unet), settings.rank, float(settings.alpha or settings.rank), seed=0)
    for name, param in unet.named_parameters():
        param.requires_grad_("lora_" in name)
    frames, side = (2, 8) if args.small else (16, 32)
    latents_shape, text_shape = (1, 4, frames, side, side), (1, 77, unet.config.cross_attention_dim)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(latents_shape, generator=g).to(device, torch.bfloat16)
    text = torch.randn(text_shape, generator=g).to(device, torch.bfloat16)
    modules = dict(unet.named_modules())
    weights = sum(t.numel() * t.element_size() for t in (*unet.parameters(), *unet.buffers()))
    watch = CudaPeak(device) if device.type == "cuda" else AllocatedPeak()

    def step():
        with autocast(device, "bf16"):
            out = unet(latents, torch.tensor([500], device=device), text).sample
        out.float().square().mean().backward()
        unet.zero_grad(set_to_none=True)

    rows: dict[str, dict] = {}
    with merged_weight_loras(unet, True), lean_backward(unet, True):
        forward = training_forward(device, "bf16", torch.bfloat16, latents_shape, text_shape)
        plain = plan_memory(unet, forward, 2 ** 62)
        rows["no target"] = {"blocks": [], "estimate": plain.without}
        for target in (float(t) for t in args.targets.split(",") if t):
            plan = plan_memory(unet, forward, int(target * GIB))
            rows[f"target {target:g} GiB: {len(plan.blocks)} blocks recomputed"] = {
                "blocks": [modules[name] for name, _ in plan.blocks], "estimate": plan.estimate}
        rows["every block recomputed (gradient checkpointing)"] = {"blocks": checkpointable_blocks(unet),
                                                                   "estimate": None}
        step()  # warm-up
        for row in rows.values():
            row.update(times=[], peak=None, reserved=None)
        for _ in range(args.rounds):
            for row in rows.values():
                with blocks_checkpointed(row["blocks"]):
                    start = time.perf_counter()
                    with watch.watching():
                        step()
                    row["times"].append(time.perf_counter() - start)  # watching() synchronises a GPU
                    if watch.peak is not None:
                        row["peak"] = max(row["peak"] or 0, weights + watch.peak - watch.start)
                    if watch.reserved is not None:
                        row["reserved"] = max(row["reserved"] or 0, watch.reserved)
    first = statistics.median(rows["no target"]["times"])
    on_gpu = device.type == "cuda"
    machine = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}" if on_gpu else cpu_description()
    reserved_head = " reserved peak GiB |" if on_gpu else ""
    lines = [f"# A T-LoRA step at ModelScope size with a memory target ({'GPU' if on_gpu else 'CPU'}, "
             f"torch {torch.__version__})", "",
             f"{machine}; {frames} frames at {side * 8}x{side * 8}, bf16 weights and autocast, {args.rounds} rounds",
             "", f"| configuration | estimated peak GiB | measured peak GiB |{reserved_head} s/step | x no target |",
             "|---" * (6 if on_gpu else 5) + "|"]
    for name, row in rows.items():
        estimate = f"{row['estimate'] / GIB:.2f}" if row["estimate"] is not None else ""
        peak = f"{row['peak'] / GIB:.2f}" if row["peak"] else "n/a (no tcmalloc)"
        reserved = f" {row['reserved'] / GIB:.2f} |" if on_gpu else ""
        t = statistics.median(row["times"])
        lines.append(f"| {name} | {estimate} | {peak} |{reserved} {t:.2f} | {t / first:.2f} |")
    print("\n".join(lines))
    if args.out:
        from cav_core import atomic_path

        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
