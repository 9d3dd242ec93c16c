"""The ModelScope-size benchmark runs its real configurations (here narrowed, on the CPU)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_script_runs_every_configuration(tmp_path):
    spec = importlib.util.spec_from_file_location("modelscope_cost", os.path.join(ROOT, "bench", "modelscope_cost.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cost.md"
    assert bench.main(["--small", "--device", "cpu", "--steps", "3", "--warmup", "1", "--frames", "2",
                       "--size", "64", "--sample-steps", "2", "--only", "motion,sampling", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report  # fp16 weights with loss scaling failed before the adapters were fp32
    rows = [line for line in report.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 7 + 4 and all(" 1.00 |" in r for r in (rows[0], rows[7]))  # ratios against row 1
    assert "Stage 1" not in report  # --only left the absorber table out
