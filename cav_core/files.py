"""Atomic writes and path checks: no partial files, no escapes from a folder."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator

from .errors import CavError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary keeps ``path``'s extension, since writers (opencv, Pillow) pick formats by it.
    On any error, or an interrupt, the temporary is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".partial{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_UMASK = os.umask(0)
os.umask(_UMASK)
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def sanitize_name(name: str, default: str = "untitled") -> str:
    """A user-supplied name reduced to a safe single file name (no folders, no leading dots)."""
    name = os.path.basename(name.replace("\\", "/"))
    name = _UNSAFE.sub("_", name).strip(" .")
    return name or default


def resolve_inside(folder: str | os.PathLike, name: str) -> str:
    """``folder/name`` resolved with symlinks, refused unless it stays inside ``folder``."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, target]) != root:
        raise CavError(f"'{name}' points outside of {root}; use a name inside that folder")
    return target
