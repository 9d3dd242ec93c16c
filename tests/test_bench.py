"""The ModelScope-size benchmark runs its real configurations (here narrowed, on the CPU)."""
from tools.bench import modelscope_cost as bench


def test_benchmark_script_runs_every_configuration(tmp_path):
    out = tmp_path / "cost.md"
    assert bench.main(["--small", "--device", "cpu", "--steps", "3", "--warmup", "1", "--frames", "2",
                       "--size", "64", "--sample-steps", "2", "--only", "motion,sampling", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report  # fp16 weights with loss scaling failed before the adapters were fp32
    rows = [line for line in report.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 10 + 4 and all(" 1.00 |" in r for r in (rows[0], rows[10]))  # ratios against row 1
    assert sum("feed-forwards recomputed" in r for r in rows) == 2  # fp32 and bf16 weights, beside the defaults
    assert sum("keeping all autograd saves" in r for r in rows) == 1  # beside the bf16 default
    assert "Stage 1" not in report  # --only left the absorber table out
