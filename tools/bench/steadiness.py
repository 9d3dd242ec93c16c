"""How steady the machine is while a benchmark runs: a fixed fp32 matrix product, timed again and again.

On a quiet machine the repeats take about the same time; on a shared or throttled one the same work
takes up to twice as long from one moment to the next, and a ratio between two rows measured moments
apart is only as good as that spread. The benchmarks probe before and after their rows and print both,
so a table says itself whether the machine it came from could judge a goal a few percent away.
"""
from __future__ import annotations

import statistics
import time

SIDE = 1024  # one product is about 2 GFLOP: tens of milliseconds on 2 cores, far above the clock's noise
PRODUCTS = 10  # per timed repeat
REPEATS = 20  # timed repeats a probe: a few seconds on 2 cores


def probe(threads: int, repeats: int = REPEATS) -> dict:
    """Time ``repeats`` batches of the same products on ``threads`` threads: the lowest batch in seconds,
    and the median and highest as multiples of it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(SIDE, SIDE, generator=generator) for _ in range(2))
        a @ b  # the first product pays for loading the kernels
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(PRODUCTS):
                a @ b
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    low = min(times)
    return {"lowest_s": low, "median": statistics.median(times) / low, "highest": max(times) / low,
            "repeats": repeats, "threads": threads}


def add_repeats_option(parser) -> None:
    """``--probe-repeats`` on a benchmark's command line: its probes' timed repeats."""
    parser.add_argument("--probe-repeats", type=int, default=REPEATS,
                        help="timed repeats of each steadiness probe (fewer: a quicker, rougher probe)")


def threads(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


def describe(probes: dict[str, dict]) -> str:
    """One line for a report: each probe (named by when it ran) as its median and highest repeat against
    its lowest, and the lowest against the lowest of them all (the machine slowing between probes)."""
    fastest = min(p["lowest_s"] for p in probes.values())
    first = next(iter(probes.values()))
    parts = [f"{when}, median {p['median']:.2f}× and highest {p['highest']:.2f}× its lowest "
             f"({p['lowest_s'] / fastest:.2f}× the fastest probe's lowest)" for when, p in probes.items()]
    return (f"Steadiness: the same {SIDE}×{SIDE} fp32 matrix products ({PRODUCTS} a repeat) timed "
            f"{first['repeats']} times on {threads(first['threads'])}, " + "; ".join(parts)
            + ". A quiet machine gives about 1.0×; a ratio below is only as good as this spread")
