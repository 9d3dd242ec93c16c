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


# atomic_path writes ".NAME.XXXXXXXX.partialEXT" beside the file: the longest name a write needs.
_TEMP_NAME_EXTRA = len("..") + 8 + len(".partial")


def _name_max(folder: str) -> int:
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows) or no answer
        return 255
    return limit if limit > 0 else 255


def check_name_fits(path: str | os.PathLike, suffix: str = "") -> None:
    """Refuse an output path whose names the file system cannot hold (before any work is done).

    ``suffix`` is what is appended for files written beside it (train's ``.ckpt``). Folders that do
    not exist yet are checked too, since the write creates them.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    new_parts = []
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder, part = os.path.split(folder)
        new_parts.append(part)
    limit = _name_max(folder)
    for part in reversed(new_parts):
        if len(os.fsencode(part)) > limit:
            raise CavError(f"folder name '{part[:40]}...' is {len(os.fsencode(part))} bytes; "
                           f"this file system allows {limit}")
    size = len(os.fsencode(name + suffix)) + _TEMP_NAME_EXTRA
    if size > limit:
        raise CavError(f"file name '{name[:40]}...' is too long: {len(os.fsencode(name))} bytes, at most "
                       f"{limit - _TEMP_NAME_EXTRA - len(os.fsencode(suffix))} here (room is kept for the "
                       "temporary file written beside it)")


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
