"""The CPU benchmark runs its rows in processes of their own and reports ratios (narrowed here)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cav_core.allocator import chosen_allocator
from tools.bench import cpu_cost


def test_cpu_benchmark_reports_rows_with_ratios(tmp_path):
    out = tmp_path / "cpu.md"
    assert cpu_cost.main(["--small", "--steps", "3", "--warmup", "1", "--frames", "2", "--size", "64",
                          "--sample-steps", "3", "--threads", "1", "--probe-repeats", "2", "--rows",
                          "plain,tlora,sample_base,sample_fused",
                          "--repeats", "1", "--demo", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report and "nan" not in report
    tables, goals = report.split("## Goals")
    rows = [line for line in tables.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 4 and all(" 1.00 |" in rows[i] for i in (0, 2))  # each table against its first row
    assert "## Training" in report and "## Sampling" in report
    # without the MotionDirector-style row only the sampling goal and the demo (quick with --small) are judged
    assert [line.split(" | ")[0] for line in goals.splitlines() if line.startswith("| ") and
            not line.startswith("| goal |")] == \
        ["| sampling with two stacked, fused T-LoRAs ≤ 1.05× base alone", "| the demo (`python -m cav_core demo`) ≤ 300 s"]
    assert "Judged outside this run:" in goals
    steadiness = [line for line in tables.splitlines() if line.startswith("Steadiness: ")]
    assert len(steadiness) == 1 and "before the rows, median " in steadiness[0] and "after them, median " in \
        steadiness[0]  # the machine probed on both sides of the rows
    assert all(" | one round | " in row for row in rows)  # one round: no spread to report
    # the plain loop stands in for others' code and runs on the C library's malloc; the project's rows
    # run as `python -m cav_core` does, on tcmalloc where it is installed
    malloc = {cells[0]: cells[1] for cells in (row.split(" | ") for row in rows)}
    assert malloc["| plain peft T-LoRA loop (VAE and text encoder every step)"] == "system"
    project = malloc["| " + cpu_cost.TRAINING_ROWS["tlora"]]
    assert project == "system" if chosen_allocator() is None else project.startswith("libtcmalloc")


@pytest.mark.parametrize("key", [cpu_cost.FLOOR_ROW, "sample_scheduled"])
def test_a_row_left_out_of_the_narrowed_run_runs_its_steps(key, tmp_path):
    """Rows the narrowed run above leaves out, run in this process (a row's process costs its imports)."""
    import types

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = cpu_cost.load_row_base(key, cpu_cost.build_base_folder(str(tmp_path), small=True))
        ticks = []
        cpu_cost.run_row_here(key, base, cpu_cost.reference_frames(2, 64),
                              types.SimpleNamespace(steps=2, sample_steps=3), lambda *_: ticks.append(1))
    finally:
        torch.set_num_threads(threads)
    assert len(ticks) == (3 if key in cpu_cost.SAMPLING_ROWS else 2)


def test_rows_standing_in_for_others_programs_run_without_the_preloaded_allocator(monkeypatch, tmp_path):
    library = tmp_path / "libtcmalloc_minimal.so.4"
    library.write_bytes(b"")
    monkeypatch.setenv("CAV_ALLOCATOR", str(library))
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    assert cpu_cost.row_environment("tlora")["LD_PRELOAD"] == f"{library} libother.so"
    assert cpu_cost.row_environment("motiondirector_tcmalloc")["LD_PRELOAD"] == f"{library} libother.so"
    for key in cpu_cost.SYSTEM_MALLOC_ROWS:
        assert cpu_cost.row_environment(key)["LD_PRELOAD"] == "libother.so"


def test_a_given_base_sets_the_clip_size_and_the_t_lora_rows_settings_from_its_recipe(tmp_path, monkeypatch):
    from cav_core.base_model import resolve_base_path

    out = tmp_path / "toy.md"
    monkeypatch.chdir(tmp_path)  # given relative to the caller's folder: the rows run from the repository root
    given = os.path.relpath(resolve_base_path("toy"))
    assert cpu_cost.main(["--base", given, "--rows", "tlora", "--steps", "3", "--warmup", "1", "--threads", "1",
                          "--probe-repeats", "2", "--repeats", "1", "--out", str(out)]) == 0
    report = out.read_text()
    assert report.startswith(f"# CPU cost of training and sampling (base `{given}`)")
    assert "16 frames at 64x64" in report  # the bundled base's recipe, not the 128x128 default
    assert "T-LoRA rows train with the base's recipe 'shapes_world' (" in report
    assert "motion.include_temporal_convs=True" in report
    assert "FAILED" not in report and "nan" not in report


def test_each_measure_is_a_rows_lowest_over_its_rounds_and_a_failed_round_fails_the_row():
    first = {"s_per_step": 2.0, "peak_rss_mib": 1000.0, "setup_s": 5.0, "steps": 8}
    second = {"s_per_step": 1.5, "peak_rss_mib": 1010.0, "setup_s": 6.0, "steps": 8}
    assert cpu_cost.lowest([first, second]) == {"s_per_step": 1.5, "peak_rss_mib": 1000.0, "setup_s": 5.0, "steps": 8,
                                                "s_per_step_rounds": [2.0, 1.5]}  # for round-by-round ratios
    assert cpu_cost.lowest([first, {"error": "killed"}]) == {"error": "killed"}
    slow = {"seconds": 616.0, "seconds_by_part": {"motion": 544.0}, "training_steps": {"motion": 1000}}
    fast = {"seconds": 594.0, "seconds_by_part": {"motion": 530.0}, "training_steps": {"motion": 1000}}
    assert cpu_cost.lowest([slow, fast])["seconds_by_part"] == {"motion": 530.0}  # the parts of the time kept


def test_a_rows_spread_is_its_slowest_round_against_its_lowest():
    row = cpu_cost.lowest([{"s_per_step": 0.5}, {"s_per_step": 0.4}, {"s_per_step": 0.44}])
    assert cpu_cost._spread(row) == "1.25"
    assert cpu_cost._spread(cpu_cost.lowest([{"s_per_step": 0.5}])) == "one round"


def test_the_steadiness_probe_times_the_same_work_and_reports_its_spread():
    from tools.bench import steadiness

    measured = steadiness.probe(threads=1, repeats=3)
    assert measured["lowest_s"] > 0 and 1.0 <= measured["median"] <= measured["highest"]
    line = steadiness.describe({"before": {**measured, "lowest_s": 0.2, "median": 1.05, "highest": 1.4},
                                "after": {**measured, "lowest_s": 0.3, "median": 1.5, "highest": 2.0}})
    assert "timed 3 times on 1 thread, " in line
    assert "before, median 1.05× and highest 1.40× its lowest (1.00× the fastest probe's lowest)" in line
    assert "after, median 1.50× and highest 2.00× its lowest (1.50× the fastest probe's lowest)" in line


def test_what_a_row_holds_is_measured_once_as_its_first_forward_starts():
    import torch

    net = torch.nn.Linear(4, 4)
    held = cpu_cost._held_at_first_forward(net)
    assert held == []  # nothing yet: the row has not computed anything
    net(torch.zeros(1, 4))
    net(torch.zeros(1, 4))
    assert len(held) == 1 and held[0] > 0 and not net._forward_pre_hooks  # once, then the hook is gone


def test_goals_say_the_measured_ratio_whether_it_is_met_and_what_stands_in_the_way():
    row = lambda step, rss, held=500.0: {"s_per_step": step, "peak_rss_mib": rss, "setup_s": 1.0,  # noqa: E731
                                         "held_mib": held}
    results = {"motiondirector": row(4.0, 2000, 1100), "tlora": row(1.6, 1400, 900),
               "tlora_checkpointing": row(2.0, 1000), "sample_base": row(1.0, 900),
               "sample_fused": {**row(1.1, 900), "s_per_step_rounds": [1.1, 1.3]}}
    text = cpu_cost.goals(results)
    assert "| default T-LoRA step ≤ 0.5× MotionDirector-style | 0.400× | yes |  |" in text  # met: nothing in the way
    assert ("| default T-LoRA peak memory ≤ 0.6× MotionDirector-style | 0.700× | no | its process holds 900 MiB "
            "as its first step starts, of the 1200 MiB allowed, and its steps add 500 MiB; the MotionDirector-style "
            "run holds 1100 MiB and adds 900 |") in text
    assert ("| sampling with two stacked, fused T-LoRAs ≤ 1.05× base alone | 1.100× | no | it measured 1.100 s; "
            "the goal allows 1.050 s |") in text  # one round of the base alone: no round-by-round ratios
    results["sample_base"]["s_per_step_rounds"] = [1.2, 1.0]
    assert ("| 1.100× | no | round by round against the base alone row of the same round: 0.92×, 1.30× |"
            in cpu_cost.goals(results))
    assert "at once: T-LoRA with gradient checkpointing.\n" in text
    results["tlora_checkpointing"] = {"error": "out of memory"}
    assert "at once: none.\n" in cpu_cost.goals(results)
    results["demo"] = {"seconds": 412.0, "fidelity": 0.66, "peak_rss_mib": 900.0, "clips": 6,
                       "seconds_by_part": {"loading": 2.0, "absorber": 10.0, "motion": 360.0, "sampling": 40.0},
                       "training_steps": {"absorber": 150, "motion": 1000}}
    text = cpu_cost.goals(results)
    assert ("| the demo (`python -m cav_core demo`) ≤ 300 s | 412 s (motion fidelity 0.66, one seed) | no | the "
            "T-LoRA stage took 360 s (1000 steps, 0.36 s each with its setup), the absorber's 150 steps 10 s, loading "
            "2 s, sampling 6 clips and writing files 40 s: to fit in 300 s beside the rest, a T-LoRA step must take "
            "0.25 s |") in text
    assert text.index("≤ 1.05×") < text.index("the demo") < text.index("at once")  # with the other goal rows


def test_a_missed_step_goal_says_how_much_of_the_step_is_the_frozen_bases_own():
    row = lambda step, rounds: {"s_per_step": step, "peak_rss_mib": 500.0, "setup_s": 1.0,  # noqa: E731
                                "held_mib": 400.0, "s_per_step_rounds": rounds}
    results = {"motiondirector": row(0.5, [0.5, 0.6]), "tlora": row(0.28, [0.28, 0.29])}
    way = ("| default T-LoRA step ≤ 0.5× MotionDirector-style | 0.560× | no | round by round against the "
           "MotionDirector-style row of the same round: 0.56×, 0.48×")
    assert way + " |" in cpu_cost.goals(results)  # no frozen base measured: the rounds alone
    results[cpu_cost.FLOOR_ROW] = row(0.25, [0.25, 0.26])
    assert (way + "; the frozen base's own forward and backward (nothing trained) take 0.250 s, 0.50× the "
            "MotionDirector-style step, and the adapters make it 1.12× that |") in cpu_cost.goals(results)
    results["sample_base"], results["sample_fused"] = row(1.0, [1.0, 1.0]), row(1.1, [1.1, 1.1])
    assert "| 1.100× | no | round by round against the base alone row of the same round: 1.10×, 1.10× |" in \
        cpu_cost.goals(results)  # sampling is not held against the frozen base's training step
    results[cpu_cost.FLOOR_ROW] = {"error": "killed"}
    assert way + " |" in cpu_cost.goals(results)


def test_saved_activations_are_counted_by_the_layer_that_saved_them(capsys):
    import torch

    from tools.bench import saved_activations

    L = torch.nn.Linear  # noqa: N806
    net = torch.nn.Sequential(L(8, 16), torch.nn.GELU(), L(16, 12), torch.nn.GELU(), L(12, 10), L(10, 4))
    net[0].requires_grad_(False)
    net[4].requires_grad_(False)
    by_module, weight_bytes = saved_activations.saved_by_module(net, torch.randn(32, 8))
    assert "0" not in by_module and "1" not in by_module  # before the first trainable layer nothing is kept
    assert by_module["2"] == 32 * 16 * 4  # a trainable layer keeps its input for its weight's gradient
    assert by_module["3"] == 32 * 12 * 4  # GELU keeps its input
    assert "4" not in by_module  # a frozen layer passes gradients back with its weight alone
    assert weight_bytes == (12 * 10 + 10 * 4) * 4  # the weights of the layers that pass gradients back
    assert saved_activations.main(["--small", "--frames", "2", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "activations saved for backward" in out and "| GEGLU |" in out and "| transformer_in |" in out


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's; elsewhere ru_maxrss is used")
def test_a_rows_peak_memory_is_its_own_not_the_launching_process():
    held = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this (the launching) process
    probe = ("import resource; from tools.bench.cpu_cost import peak_rss_mib; "
             "print(peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=cpu_cost.ROOT, capture_output=True, text=True, check=True)
    own, inherited = map(float, out.stdout.split())
    assert own < 200 < 400 <= inherited  # ru_maxrss would have reported the launcher's 400 MiB
    del held


def test_the_machine_line_names_the_cpu_and_whether_it_computes_bf16_natively(tmp_path):
    """The bf16 rows cost several times fp32's on a CPU without bf16 instructions: the table says which."""
    info = "processor\t: {n}\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 {extra}\n\n"
    without, with_bf16 = tmp_path / "without", tmp_path / "with"
    without.write_text(info.format(n=0, extra="avx512f") + info.format(n=1, extra="avx512f"))
    with_bf16.write_text(info.format(n=0, extra="avx512f avx512_bf16 amx_bf16"))
    assert cpu_cost.cpu_description(str(without)).endswith("Example CPU 9000, bf16 in hardware: no")
    assert cpu_cost.cpu_description(str(with_bf16)).endswith("bf16 in hardware: avx512_bf16, amx_bf16")
    assert cpu_cost.cpu_description(str(tmp_path / "absent"))  # off Linux: the architecture alone
