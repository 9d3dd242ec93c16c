"""The command line's choice of memory allocator (cav_core.allocator)."""
import os
import subprocess
import sys
import textwrap

import pytest

from cav_core import allocator
from cav_core.errors import CavError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's")


@pytest.fixture()
def fake_library(tmp_path):
    path = tmp_path / "libtcmalloc_minimal.so.4"
    path.write_bytes(b"")
    return str(path)


@linux_only
def test_a_given_library_is_put_first_in_ld_preload(fake_library):
    env = allocator.preload_environment({"CAV_ALLOCATOR": fake_library, "LD_PRELOAD": "libother.so"})
    assert env["LD_PRELOAD"] == f"{fake_library} libother.so"


@linux_only
def test_nothing_changes_once_the_library_is_preloaded(fake_library):
    env = {"CAV_ALLOCATOR": fake_library, "LD_PRELOAD": f"libother.so:{fake_library}"}
    assert allocator.preload_environment(env) is None
    # the same library under another path counts as loaded, so a start never repeats
    assert allocator.preload_environment({"CAV_ALLOCATOR": fake_library,
                                          "LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}) is None


def test_system_keeps_the_c_library(monkeypatch):
    assert allocator.preload_environment({"CAV_ALLOCATOR": "system"}) is None
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.preload_environment({}) is None  # no LD_PRELOAD off Linux


def test_a_missing_library_is_a_clear_error(tmp_path):
    with pytest.raises(CavError, match="CAV_ALLOCATOR=.*not a file.*'system'"):
        allocator.preload_environment({"CAV_ALLOCATOR": str(tmp_path / "nope.so")})


def test_auto_takes_tcmalloc_where_installed(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    found = {"tcmalloc_minimal": None, "tcmalloc": "libtcmalloc.so.4"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library", found.get)
    assert allocator.chosen_allocator({}) == "libtcmalloc.so.4"
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert allocator.chosen_allocator({"CAV_ALLOCATOR": "auto"}) is None


def test_a_baseline_environment_drops_allocators_only():
    env = allocator.system_environment({"LD_PRELOAD": "/x/libtcmalloc_minimal.so.4 libother.so:/y/libjemalloc.so.2"})
    assert env["LD_PRELOAD"] == "libother.so" and env["CAV_ALLOCATOR"] == "system"
    assert "LD_PRELOAD" not in allocator.system_environment({"LD_PRELOAD": "libjemalloc.so.2"})


def test_the_command_line_reports_a_bad_choice_without_a_traceback(tmp_path):
    env = {**os.environ, "CAV_ALLOCATOR": str(tmp_path / "nope.so")}
    proc = subprocess.run([sys.executable, "-m", "cav_core", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: CAV_ALLOCATOR=") and "Traceback" not in proc.stderr


@linux_only
@pytest.mark.skipif(allocator.chosen_allocator({}) is None,
                    reason="tcmalloc is not installed (Debian and Ubuntu: libtcmalloc-minimal4)")
def test_a_program_starts_again_with_tcmalloc_loaded(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from cav_core import allocator
        print("before", allocator.loaded_allocator(), flush=True)
        allocator.relaunch_with_allocator()
        print("after", allocator.loaded_allocator(), sys.argv[1:])
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CAV_ALLOCATOR")}
    proc = subprocess.run([sys.executable, str(script), "--flag", "x y"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "before system"
    assert lines[2].startswith("after libtcmalloc") and lines[2].endswith(" ['--flag', 'x y']")
    assert lines[1].startswith("before libtcmalloc")  # the second start, already on tcmalloc, goes on
    system = subprocess.run([sys.executable, str(script)], env={**env, "CAV_ALLOCATOR": "system"},
                            capture_output=True, text=True)
    assert system.stdout.splitlines() == ["before system", "after system []"]
