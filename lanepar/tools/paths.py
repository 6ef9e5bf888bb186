"""What the file tools share about paths: the errors they raise and small helpers.

The confinement itself (walking a path beneath a root descriptor) lives in
:mod:`lanepar.tools.beneath`; the exceptions live in :mod:`lanepar._exceptions` and are
re-exported here for the tools.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .._exceptions import NotRegularFileError, PathOutsideRootError

StrPath = str | os.PathLike[str]


__all__ = [
    "NotRegularFileError",
    "PathOutsideRoot",
    "PathOutsideRootError",
    "StrPath",
    "file_kind",
    "is_within",
    "relative_to_root",
    "resolve_root",
]

#: The name this error had before it moved to :mod:`lanepar._exceptions`; the same class.
PathOutsideRoot = PathOutsideRootError


def file_kind(mode: int) -> str:
    """A file type in words, for error messages."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def resolve_root(root: StrPath) -> Path:
    """The root as an absolute, symlink-free path; it must exist and be a directory."""
    resolved = Path(root).resolve(strict=True)
    if not resolved.is_dir():
        raise NotADirectoryError(f"root {os.fspath(root)!r} is not a directory")
    return resolved


def is_within(path: Path, root: Path) -> bool:
    """Whether an already resolved ``path`` is ``root`` or below it."""
    return path == root or root in path.parents


def relative_to_root(path: Path, root: Path) -> str:
    """A path under ``root`` as the forward-slash text tools return (stable across platforms)."""
    return path.relative_to(root).as_posix()
