"""The time goals measured with two rows' processes taking turns step by step (narrowed here)."""
import json
import subprocess
import sys

from tools.bench import alternated, cpu_cost, turns


STEPPER = """
import json, sys, time
from tools.bench.turns import StepTurns
name, steps, pause, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
assert sys.argv[5] == "--turn-fds"
turns = StepTurns(sys.argv[6])
turns.wait()
for _ in range(steps):
    with open(log, "a") as f:
        f.write(name + " start\\n")
    time.sleep(pause)
    with open(log, "a") as f:
        f.write(name + " end\\n")
    if name == "crash" and len(turns.seconds) == 1:
        sys.exit(3)
    turns.step_done()
print(json.dumps(turns.seconds))
"""


def _steppers(tmp_path, runs):
    log = tmp_path / "log"
    processes, givers = [], []
    for name, steps, pause in runs:
        process, ends = turns.launch([sys.executable, "-c", STEPPER, name, str(steps), str(pause), str(log)],
                                     cwd=cpu_cost.ROOT, stdout=subprocess.PIPE, text=True)
        processes.append(process)
        givers.append(ends)
    turns.take_turns(givers)
    outputs = [proc.communicate(timeout=30)[0] for proc in processes]
    return log.read_text().split("\n")[:-1], processes, outputs


def test_two_processes_take_turns_step_by_step_and_each_step_is_timed_alone(tmp_path):
    events, processes, outputs = _steppers(tmp_path, [("a", 3, 0.05), ("b", 5, 0.005)])
    steps = [event.split()[0] for event in events[::2]]
    assert all(events[i].split()[0] == events[i + 1].split()[0] for i in range(0, len(events), 2))  # no overlap
    assert steps == ["a", "b", "a", "b", "a", "b", "b", "b"]  # alternated, then the longer run alone
    a, b = (json.loads(out) for out in outputs)
    assert len(a) == 3 and len(b) == 5 and all(p.returncode == 0 for p in processes)
    assert min(a) >= 0.05 and max(b) < 0.05  # the other's step is not counted in a step's time


def test_a_process_that_dies_mid_run_leaves_the_other_to_go_on_alone(tmp_path):
    events, processes, outputs = _steppers(tmp_path, [("crash", 5, 0.001), ("b", 3, 0.001)])
    assert [event.split()[0] for event in events[::2]] == ["crash", "b", "crash", "b", "b"]
    assert processes[0].returncode == 3 and processes[1].returncode == 0 and len(json.loads(outputs[1])) == 3


def test_pairs_compare_neighbouring_steps_after_the_warm_up():
    seconds = {"tlora": {"step_seconds": [9.0, 1.0, 2.0, 1.0, 2.0]},
               "motiondirector": {"step_seconds": [9.0, 2.0, 4.0, 2.5, 4.0]}}
    result = alternated.compare(seconds, "tlora", "motiondirector", warmup=1)
    assert result["pairs"] == 4 and result["ratio"] == 0.5  # ratios 0.5, 0.5, 0.4, 0.5
    assert result["low"] == 0.475 and result["high"] == 0.5
    assert result["row_s"] == 1.5 and result["versus_s"] == 3.25
    assert "error" in alternated.compare(seconds, "tlora", "motiondirector", warmup=5)


def test_the_time_goals_are_measured_alternated_and_judged(tmp_path):
    out = tmp_path / "alternated.md"
    assert alternated.main(["--small", "--steps", "3", "--warmup", "1", "--frames", "2", "--size", "64",
                            "--sample-steps", "3", "--threads", "1", "--probe-repeats", "2", "--out", str(out)]) == 0
    report = out.read_text()
    assert "FAILED" not in report and "nan" not in report and report.count("Steadiness: ") == 1
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ") and "goal |" not in line]
    assert [(cells[0], cells[2], cells[4]) for cells in rows] == [
        ("| default T-LoRA step ≤ 0.5×", "MotionDirector-style", "2"),  # 3 steps, 1 left out
        ("| sampling with two stacked, fused T-LoRAs ≤ 1.05×", "base alone", "2")]
    for cells in rows:
        shown, limit = float(cells[5].rstrip("×")), float(cells[0].split("≤ ")[1].rstrip("×"))
        assert cells[7] in (("yes |", "no |") if shown == limit else ("yes |",) if shown < limit else ("no |",))


def test_a_ratio_just_over_its_goal_reads_as_over_it():
    results = {("sample_fused", "sample_base"): {"row_s": 0.094, "versus_s": 0.089, "pairs": 2,
                                                 "ratio": 1.0529, "low": 1.0398, "high": 1.0661}}
    assert "| 1.053× | 1.040–1.066× | no |" in alternated.render(["header"], results)
