"""The README's commands are what CI runs."""
import re


def _readme_commands():
    text = open("README.md").read()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_starts_with_demo_and_test_commands():
    demo, tests = _readme_commands()[:2]
    assert "python -m cav_core demo" in demo and demo.startswith("python3 -m venv")
    assert "pytest" in tests and tests.startswith("python3 -m venv")


def test_ci_runs_exactly_the_readme_test_command():
    tests = _readme_commands()[1]
    ci = open(".ci/run").read().strip().splitlines()
    assert ci[-1] == tests
