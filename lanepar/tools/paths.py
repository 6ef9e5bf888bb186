"""What the file tools share about paths: the errors they raise and small helpers.

The confinement itself (walking a path beneath a root descriptor) lives in
:mod:`lanepar.tools.beneath`; these names are kept apart so that the public exceptions can be
imported without it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

StrPath = str | os.PathLike[str]


class PathOutsideRootError(ValueError):
    """A tool was asked for a path that resolves outside the directory it is confined to."""

    def __init__(self, path: StrPath, root: StrPath) -> None:
        self.path = os.fspath(path)
        self.root = os.fspath(root)
        super().__init__(f"path {self.path!r} resolves outside the root {self.root!r}")

    def __reduce__(self) -> tuple[type[PathOutsideRootError], tuple[str, str]]:
        # Explicit because the default pickling passes the message as the only argument, and the
        # error has to survive the trip back from a process-lane child.
        return (type(self), (self.path, self.root))


#: The name before the ``...Error`` convention; the same class.
PathOutsideRoot = PathOutsideRootError


class NotRegularFileError(OSError):
    """A file tool was pointed at a FIFO, device, socket or directory where it needs a file."""

    def __init__(self, path: StrPath, kind: str) -> None:
        self.path = os.fspath(path)
        self.kind = kind
        super().__init__(
            errno.EINVAL, f"{self.path!r} is a {kind}, not a regular file; file tools open only "
            "regular files"
        )  # fmt: skip

    def __str__(self) -> str:
        return str(self.args[1])

    def __reduce__(self) -> tuple[type[NotRegularFileError], tuple[str, str]]:
        return (type(self), (self.path, self.kind))


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
