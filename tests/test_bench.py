"""The ModelScope-size benchmarks run their real configurations (here narrowed, on the CPU, and on a GPU
where there is one)."""
import pytest
import torch

from tools.bench import modelscope_cost as bench


def test_benchmark_script_runs_every_configuration(tmp_path):
    out = tmp_path / "cost.md"
    assert bench.main(["--small", "--device", "cpu", "--steps", "3", "--warmup", "1", "--frames", "2",
                       "--size", "64", "--sample-steps", "2", "--only", "motion,sampling", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report  # fp16 weights with loss scaling failed before the adapters were fp32
    rows = [line for line in report.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 11 + 4 and all(" 1.00 |" in r for r in (rows[0], rows[11]))  # ratios against row 1
    assert sum(r.startswith(f"| {bench.DEFAULT_ROW} |") for r in rows) == 1
    assert f"- {bench.DEFAULT_ROW}: a training step is estimated to peak at" in report  # what it recomputed, if any
    assert "Goal, a T-LoRA step in <= 6 GiB" in report and "the process's peak" in report
    assert sum("feed-forwards recomputed" in r for r in rows) == 2  # fp32 and bf16 weights, beside the defaults
    assert sum("keeping all autograd saves" in r for r in rows) == 1  # beside the bf16 default
    assert "Stage 1" not in report  # --only left the absorber table out


def test_memory_target_benchmark_runs_every_configuration(tmp_path):
    from tools.bench import memory_target

    out = tmp_path / "target.md"
    assert memory_target.main(["--small", "--rounds", "1", "--targets", "0.3,1e-9", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "configuration" not in line]
    assert [r.split(" | ")[0] for r in rows][::3] == ["| no target", "| every block recomputed (gradient checkpointing)"]
    assert "target 0.3 GiB: 0 blocks recomputed" in rows[1] and " 0 blocks" not in rows[2]  # nothing fits 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reads a CUDA device's allocator: needs a GPU")
def test_memory_target_benchmark_measures_a_gpu(tmp_path):
    from tools.bench import memory_target

    out = tmp_path / "target.md"
    assert memory_target.main(["--small", "--device", "cuda", "--rounds", "1", "--targets", "0.3,1e-9",
                               "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines()
            if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 4
    for row in rows:  # measured peak, reserved peak: both read from the allocator, its cache on top
        assert float(row[2]) <= float(row[3])
