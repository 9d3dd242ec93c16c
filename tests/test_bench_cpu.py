"""The CPU benchmark runs its rows in processes of their own and reports ratios (narrowed here)."""
from tools.bench import cpu_cost


def test_cpu_benchmark_reports_rows_with_ratios(tmp_path):
    out = tmp_path / "cpu.md"
    assert cpu_cost.main(["--small", "--steps", "3", "--warmup", "1", "--frames", "2", "--size", "64",
                          "--sample-steps", "3", "--threads", "1", "--rows",
                          "plain,tlora,sample_base,sample_fused,sample_scheduled",
                          "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report and "nan" not in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 5 and all(" 1.00 |" in rows[i] for i in (0, 2))  # each table against its first row
    assert "## Training" in report and "## Sampling" in report


def test_goals_say_the_measured_ratio_and_whether_it_is_met():
    row = lambda step, rss: {"s_per_step": step, "peak_rss_mib": rss, "setup_s": 1.0}  # noqa: E731
    results = {"motiondirector": row(4.0, 2000), "tlora": row(1.6, 1400), "tlora_checkpointing": row(2.0, 1000),
               "sample_base": row(1.0, 900), "sample_fused": row(1.1, 900)}
    text = cpu_cost.goals(results)
    assert "| default T-LoRA step ≤ 0.5× MotionDirector-style | 0.40× | yes |" in text
    assert "| default T-LoRA peak memory ≤ 0.6× MotionDirector-style | 0.70× | no |" in text
    assert "| sampling with two stacked, fused T-LoRAs ≤ 1.05× base alone | 1.10× | no |" in text
    assert text.rstrip().endswith("at once: T-LoRA with gradient checkpointing.")
    results["tlora_checkpointing"] = {"error": "out of memory"}
    assert cpu_cost.goals(results).rstrip().endswith("at once: none.")
