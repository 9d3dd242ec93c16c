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
