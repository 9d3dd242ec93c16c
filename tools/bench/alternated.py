"""The CPU benchmark's time goals with the steps of each goal's two rows alternated.

    python -m tools.bench.alternated --base toy --steps 60 --warmup 5 --sample-steps 30 \
        --out docs/bench/alternated_shapes_world.md
    python -m tools.bench.alternated --steps 16 --warmup 3 --out docs/bench/alternated.md   # the 64.5 M base
    python -m tools.bench.alternated --small --steps 3 --warmup 1 --frames 2 --size 64   # checks the script

``cpu_cost`` runs its rows one after the other, minutes apart; on a machine whose speed drifts (a shared
or throttled one) a time ratio between two of them moves with the drift. Here the two rows of each time
goal of ``cpu_cost.GOALS`` (the default T-LoRA against the MotionDirector-style run, fused T-LoRAs
against the base alone) run at once, each in a process of its own as ``cpu_cost`` runs it (its own
malloc, its own base), and take turns (``tools/bench/turns.py``): one step of the one, then one step of
the other. A step is timed from being given its turn to its end, so the two never overlap, and each
ratio is of two neighbouring steps, between which the machine has hardly changed. Reported per goal:
each row's median step, and the median of the step-by-step ratios with their quartiles; the steps
before ``--warmup`` (the first with the row's setup) are left out. Memory and setup are ``cpu_cost``'s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading

from tools.bench import cpu_cost, steadiness, turns

TIME_GOALS = tuple(goal for goal in cpu_cost.GOALS if goal[3] == "s_per_step")


def alternate(row: str, versus: str, base_dir: str, args) -> dict:
    """Run ``row`` and ``versus``, each in a process of its own as ``cpu_cost`` runs it, their steps
    alternated: each row's step times (and peak memory), or the error of either."""
    processes, givers, outs = {}, [], {}
    try:
        for key in (row, versus):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                outs[key] = tmp.name
            processes[key], ends = turns.launch(
                cpu_cost.row_command(key, args, base_dir, outs[key]), cwd=cpu_cost.ROOT,
                env=cpu_cost.row_environment(key), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            givers.append(ends)
        reader = threading.Thread(target=turns.take_turns, args=(givers,))
        reader.start()
        errors = {key: proc.communicate()[1] for key, proc in processes.items()}  # stderr drained meanwhile
        reader.join()
        failed = [f"{key}: {cpu_cost.last_error_line(errors[key])}" for key, proc in processes.items()
                  if proc.returncode]
        if failed:
            return {"error": "; ".join(failed)}
        results = {}
        for key, out in outs.items():
            with open(out) as f:
                results[key] = json.load(f)
        return results
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.kill()
        for out in outs.values():
            os.remove(out)


def compare(results: dict, row: str, versus: str, warmup: int) -> dict:
    """Each row's median step after ``warmup`` and the step-by-step ratios' median and quartiles (the
    i-th step of ``row`` against the i-th of ``versus``, which ran next to it)."""
    mine, theirs = results[row]["step_seconds"][warmup:], results[versus]["step_seconds"][warmup:]
    ratios = [a / b for a, b in zip(mine, theirs)]
    if not ratios:
        return {"error": f"no steps after the {warmup} warm-up steps"}
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {"row_s": statistics.median(mine), "versus_s": statistics.median(theirs), "pairs": len(ratios),
            "ratio": statistics.median(ratios), "low": quartiles[0], "high": quartiles[2]}


def render(header: list[str], results: dict) -> str:
    lines = ["\n\n".join(header), "",
             "| goal | s/step | against | s/step | pairs | ratio (median of pairs) | quartiles | met |",
             "|---|---|---|---|---|---|---|---|"]
    rows = {**cpu_cost.TRAINING_ROWS, **cpu_cost.SAMPLING_ROWS}
    for what, row, versus, _, limit in TIME_GOALS:
        r = results.get((row, versus))
        if r is None:
            continue
        goal, against = f"{what} ≤ {limit:g}×", rows[versus].split(":")[0]
        if "error" in r:
            lines.append(f"| {goal} | FAILED: {r['error']} | {against} | | | | | no |")
            continue
        met = "yes" if r["ratio"] <= limit else "no"
        lines.append(f"| {goal} | {r['row_s']:.3f} | {against} | {r['versus_s']:.3f} | {r['pairs']} | "
                     f"{cpu_cost.goal_ratio(r['ratio'])} | {r['low']:.3f}–{cpu_cost.goal_ratio(r['high'])} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="a narrow base (checks the script, measures nothing)")
    p.add_argument("--base", help="measure this base (a folder, or toy) instead of the random 64.5 M one")
    p.add_argument("--frames", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--steps", type=int, default=16, help="training steps of each row")
    p.add_argument("--sample-steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3, help="training steps left out (sampling: its first)")
    p.add_argument("--threads", type=int, default=2)
    steadiness.add_repeats_option(p)
    p.add_argument("--out", help="also write the table here (markdown)")
    args = p.parse_args(argv)
    from cav_core.allocator import chosen_allocator

    given_dir, recipe, what = cpu_cost.choose_base(args)
    rows = {**cpu_cost.TRAINING_ROWS, **cpu_cost.SAMPLING_ROWS}

    def malloc(key: str) -> str:
        return "the C library's" if key in cpu_cost.SYSTEM_MALLOC_ROWS else chosen_allocator() or "the C library's"

    header = [f"# Time goals with each goal's two rows taking turns step by step ({what})",
              f"{cpu_cost.machine_and_versions(args.threads)}; {args.frames} frames at {args.size}x{args.size}, "
              f"fp32; {args.steps} training and {args.sample_steps} sampling steps a row, the first "
              f"{args.warmup} training steps and the first sampling step left out",
              f"T-LoRA rows train with the base's {recipe.summary()}; the MotionDirector-style row with the "
              "paper's settings",
              "each row in a process of its own with the malloc it has in `cpu_cost`: " + "; ".join(
                  f"{rows[key].split(' (')[0].split(':')[0]}, {malloc(key)}" for _, pair_row, versus, _, _ in TIME_GOALS
                  for key in (pair_row, versus))]
    print("\n\n".join(header), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        base_dir = given_dir or cpu_cost.build_base_folder(folder, args.small)
        probes = {"before the rows": steadiness.probe(args.threads, args.probe_repeats)}
        for _, row, versus, _, _ in TIME_GOALS:
            measured = alternate(row, versus, base_dir, args)
            warmup = 1 if row in cpu_cost.SAMPLING_ROWS else args.warmup
            results[(row, versus)] = measured if "error" in measured else compare(measured, row, versus, warmup)
            print(f"{row} against {versus}: {results[(row, versus)]}", flush=True)
        probes["after them"] = steadiness.probe(args.threads, args.probe_repeats)
    report = render([*header, steadiness.describe(probes)], results)
    print(report)
    if args.out:
        from cav_core import atomic_path

        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
