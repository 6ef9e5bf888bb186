"""Walking a tree beneath a directory descriptor without ever following a link out of it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(dir_fd: int, prefix: str, max_depth: int | None = None) -> Iterator[Entry]:
    """Every entry below the directory ``dir_fd`` (whose path under the root is ``prefix``),
    depth first; directories are descended through ``O_NOFOLLOW`` opens, never through
    symlinks, so a walk cannot leave the root and cannot loop."""
    stack: list[tuple[int, str, int]] = [(os.dup(dir_fd), prefix, 1)]
    try:
        while stack:
            fd, rel, depth = stack.pop()
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                for e in entries:
                    path = f"{rel}/{e.name}" if rel else e.name
                    try:
                        mode = _kind(e)
                    except OSError:
                        continue  # vanished meanwhile
                    yield Entry(path, fd, e.name, mode)
                    if stat.S_ISDIR(mode) and (max_depth is None or depth < max_depth):
                        try:
                            child = os.open(e.name, _DIR_FLAGS, dir_fd=fd)
                        except OSError:
                            continue  # swapped for a link or removed: skip, never follow
                        stack.append((child, path, depth + 1))
            finally:
                os.close(fd)
    finally:
        for fd, _rel, _d in stack:
            os.close(fd)


def _kind(e: os.DirEntry[str]) -> int:
    """The entry's file type as a mode, from the directory listing's own type field where the
    file system gives one (a ``stat`` per entry made a recursive glob fifty times slower)."""
    if e.is_symlink():
        return stat.S_IFLNK
    if e.is_dir(follow_symlinks=False):
        return stat.S_IFDIR
    if e.is_file(follow_symlinks=False):
        return stat.S_IFREG
    return e.stat(follow_symlinks=False).st_mode


class Entry:
    """One entry met by :meth:`Root.walk`; ``dir_fd`` is valid only until the walk moves on."""

    __slots__ = ("dir_fd", "mode", "name", "path")

    def __init__(self, path: str, dir_fd: int, name: str, mode: int) -> None:
        self.path = path
        self.dir_fd = dir_fd
        self.name = name
        self.mode = mode
