"""The memory allocator the command line runs with.

PyTorch on the CPU takes every tensor from the C library's ``malloc``. glibc's keeps the blocks that
training frees in its heap, where the next step's tensors fit them badly, so the process grows step
after step. gperftools' tcmalloc (Debian and Ubuntu: ``libtcmalloc-minimal4``) reuses them: on the
CPU benchmark's base a default T-LoRA run peaks lower at no cost in time (``docs/bench/cpu_malloc.md``).
A library for ``malloc`` can only be chosen as a process starts, so ``python -m cav_core`` starts
itself again with tcmalloc preloaded when it is installed and not yet loaded.

``CAV_ALLOCATOR``: ``auto`` (the default: tcmalloc where installed), ``system`` (the C library's), or
the path of a library to preload. Imports nothing heavy: it runs before torch is imported.
"""
from __future__ import annotations

import ctypes.util
import os
import sys

from .errors import CavError

ALLOCATOR_VARIABLE = "CAV_ALLOCATOR"
TCMALLOC_NAMES = ("tcmalloc_minimal", "tcmalloc")  # the names ctypes.util.find_library looks up
KNOWN_ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")  # how a preloaded allocator shows in the maps


def chosen_allocator(env=None) -> str | None:
    """The library to preload as ``CAV_ALLOCATOR`` in ``env`` asks, or None for the C library's."""
    env = os.environ if env is None else env
    choice = env.get(ALLOCATOR_VARIABLE, "auto").strip() or "auto"
    if choice == "system" or not sys.platform.startswith("linux"):
        return None
    if choice == "auto":
        return next(filter(None, map(ctypes.util.find_library, TCMALLOC_NAMES)), None)
    if not os.path.isfile(choice):
        raise CavError(f"{ALLOCATOR_VARIABLE}={choice!r} is not a file: give the path of a malloc library "
                       "(libtcmalloc_minimal.so.4, say), 'auto' for tcmalloc where installed, or 'system'")
    return choice


def preload_environment(env=None) -> dict | None:
    """``env`` with the chosen allocator added to ``LD_PRELOAD``, or None when nothing is to change: the
    C library's is chosen, no tcmalloc is installed, or ``LD_PRELOAD`` already names the library (it is
    loaded, or the loader refused it; either way starting again would change nothing)."""
    env = dict(os.environ if env is None else env)
    library = chosen_allocator(env)
    preloaded = _preloaded(env)
    if library is None or os.path.basename(library) in map(os.path.basename, preloaded):
        return None
    env["LD_PRELOAD"] = " ".join([library, *preloaded])
    return env


def system_environment(env=None) -> dict:
    """``env`` for a process that must run with the C library's allocator (a baseline that stands in
    for a program which runs that way): allocators are taken out of ``LD_PRELOAD``."""
    env = dict(os.environ if env is None else env)
    kept = [p for p in _preloaded(env) if not _is_allocator(p)]
    env.pop("LD_PRELOAD", None)
    if kept:
        env["LD_PRELOAD"] = " ".join(kept)
    env[ALLOCATOR_VARIABLE] = "system"
    return env


def relaunch_with_allocator() -> None:
    """Start this program again, the same way, with the chosen allocator preloaded; return if nothing is
    to change. Call it before anything allocates much (before torch is imported)."""
    env = preload_environment()
    if env is not None and loaded_allocator() == "system":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, env)


def loaded_allocator() -> str:
    """The name of the allocator this process runs with: a preloaded one found in its memory map, or
    'system' (the C library's, or what cannot be told off Linux)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "system"
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) >= 6 and _is_allocator(fields[-1]):
            return os.path.basename(fields[-1])
    return "system"


def _preloaded(env) -> list[str]:
    return env.get("LD_PRELOAD", "").replace(":", " ").split()


def _is_allocator(path: str) -> bool:
    return any(known in os.path.basename(path) for known in KNOWN_ALLOCATORS)
