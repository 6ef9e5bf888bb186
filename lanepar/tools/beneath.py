"""Keeping file tools inside their root, against paths chosen by a model and files that move.

Checking a path and then opening it by name is a race: between the check and the open, a
directory can be swapped for a symlink that points out of the root. So the file tools never open
a model-chosen path by name. :class:`Root` holds a descriptor of the root directory and walks a
path one component at a time, each component opened relative to the descriptor of the one
before with ``O_NOFOLLOW`` (``openat``-style). ``..`` pops the walker's own stack of descriptors
(it never asks the kernel for a parent, so it cannot climb above the root), and a symlink is read
with ``readlinkat`` and its target walked by the same rules: a target that leaves the root is
refused, one that stays inside works. Whatever an attacker swaps in while a walk runs, every
step opens an entry of a directory the walk already holds, so no interleaving reaches outside.

Only regular files are opened for reading or writing: a FIFO would block ``open`` or ``read``
forever, and a device or socket has no business in a file tool.

Limits (also in SECURITY.md): a directory *moved* out of the root while a walk holds it can still
be read through the held descriptor (moving it needs write access outside the root, which already
grants reading it), and hard links are ordinary files here.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from ._walk import Entry, walk
from .paths import NotRegularFileError, PathOutsideRootError, StrPath, file_kind, resolve_root

T = TypeVar("T")

#: Symlinks followed in one walk before giving up, as the kernel does (``ELOOP``).
MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: if a FIFO is swapped in between the type check and the open, open must not block.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
#: What ``O_NOFOLLOW`` answers for a symlink (``EMLINK`` on the BSDs).
_NOFOLLOW_ERRNOS = {errno.ELOOP, errno.EMLINK}
_PLAIN_ERRORS = (OSError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class _Symlink(Exception):
    """Raised by a final-step opener that met a symlink: the walk reads it and goes on."""


class Root:
    """An open root directory; every path a tool names is walked beneath its descriptor.

    The root itself is trusted (the program, not the model, chooses it), so it is opened by name
    once; use as a context manager so its descriptor is closed.
    """

    def __init__(self, root: StrPath) -> None:
        self.path = resolve_root(root)
        self._given = os.path.abspath(os.fspath(root))
        self.fd = os.open(self.path, _DIR_FLAGS)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the walk ------------------------------------------------------------------------------
    def _parts(self, path: StrPath) -> list[str]:
        """``path`` as components relative to the root (an absolute path must name the root)."""
        text = os.fspath(path)
        if not isinstance(text, str):
            raise TypeError(f"path {path!r} must be a string, not {type(text).__name__}")
        if "\0" in text:
            raise ValueError(f"path {text!r} contains a NUL character")
        if os.path.isabs(text):
            rel = self._inside(text)
            if rel is None:
                raise PathOutsideRootError(path, self.path)
            return rel
        return text.split("/")

    def _inside(self, absolute: str) -> list[str] | None:
        for base in (str(self.path), self._given):
            prefix = base.rstrip("/") + "/"
            if absolute == base or absolute + "/" == prefix:
                return []
            if absolute.startswith(prefix):
                return absolute[len(prefix) :].split("/")
        return None

    def resolve(
        self, path: StrPath, last: Callable[[int, str, list[str]], T], *, mkdir: bool = False
    ) -> T:
        """Walk ``path`` beneath the root and call ``last(dir_fd, name, where)`` for its final
        entry, ``where`` being the components of ``dir_fd`` under the root.

        ``dir_fd`` is only valid during the call; ``name`` is ``"."`` when the path names the
        root or ends in ``..``. ``last`` raises :class:`_Symlink` when it finds a symlink, and the
        walk continues with the link's target. With ``mkdir``, missing directories are created
        (after checking lexically that the not-yet-existing rest cannot climb out).
        """
        todo = collections.deque(self._parts(path))
        stack = [self.fd]  # stack[0] is the root and is not ours to close
        try:
            return self._walk(path, last, mkdir, todo, stack)
        except OSError as e:
            # A step's error names one component; the caller asked about the whole path.
            if type(e) in _PLAIN_ERRORS and e.filename != os.fspath(path):
                raise type(e)(e.errno, e.strerror, os.fspath(path)) from None
            raise
        finally:
            for fd in stack[1:]:
                os.close(fd)

    def _walk(
        self, path: StrPath, last: Callable[[int, str, list[str]], T], mkdir: bool,
        todo: collections.deque[str], stack: list[int],
    ) -> T:  # fmt: skip
        where: list[str] = []  # where[i] is the name of stack[i + 1]
        hops = 0
        while True:
            while todo and todo[0] in ("", "."):
                todo.popleft()
            if not todo:
                return last(stack[-1], ".", where)
            name = todo.popleft()
            if name == "..":
                if len(stack) == 1:
                    raise PathOutsideRootError(path, self.path)
                os.close(stack.pop())
                where.pop()
                continue
            if all(p in ("", ".") for p in todo):
                todo.clear()
                try:
                    return last(stack[-1], name, where)
                except _Symlink:
                    pass
            else:
                fd = self._open_step(stack[-1], name, path, todo, len(stack), mkdir)
                if fd is not None:
                    stack.append(fd)
                    where.append(name)
                    continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", os.fspath(path))
            self._follow(stack, where, name, path, todo)

    def _open_step(
        self, dir_fd: int, name: str, path: StrPath, rest: collections.deque[str], depth: int,
        mkdir: bool,
    ) -> int | None:  # fmt: skip
        """Open directory ``name`` under ``dir_fd``; None means it is a symlink to follow."""
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not mkdir:
                raise
        except OSError as e:
            if _was_link(e, dir_fd, name):
                return None
            raise
        _check_new_tail(rest, depth, path, self.path)
        try:
            os.mkdir(name, 0o777, dir_fd=dir_fd)
        except FileExistsError:
            pass  # made by someone else meanwhile: open it like any existing entry
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if _was_link(e, dir_fd, name):
                return None
            raise

    def _follow(
        self, stack: list[int], where: list[str], name: str, path: StrPath,
        todo: collections.deque[str],
    ) -> None:  # fmt: skip
        """Replace ``name`` (a symlink in ``stack[-1]``) by its target's components."""
        try:
            target = os.readlink(name, dir_fd=stack[-1])
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINVAL):
                todo.appendleft(name)  # no longer a link: look again (counts as a hop)
                return
            raise
        if os.path.isabs(target):
            rel = self._inside(target)
            if rel is None:
                raise PathOutsideRootError(path, self.path)
            while len(stack) > 1:
                os.close(stack.pop())
            del where[:]
            todo.extendleft(reversed(rel))
        else:
            todo.extendleft(reversed(target.split("/")))

    # -- what tools do with it -----------------------------------------------------------------
    def open_file(self, path: StrPath) -> int:
        """A read-only descriptor of the regular file ``path`` (``NotRegularFileError`` else)."""

        def last(dir_fd: int, name: str, where: list[str]) -> int:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            _want_file(st.st_mode, path)
            fd = _open_nofollow(name, os.O_RDONLY, dir_fd)
            return _checked_fd(fd, path)

        return self.resolve(path, last)

    def create_file(self, path: StrPath) -> int:
        """A write descriptor of ``path`` truncated to zero, created (with parents) if missing."""

        def last(dir_fd: int, name: str, where: list[str]) -> int:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                _want_file(st.st_mode, path)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            return _checked_fd(_open_nofollow(name, flags, dir_fd, 0o666), path)

        return self.resolve(path, last, mkdir=True)

    def open_dir(self, path: StrPath) -> int:
        """A descriptor of the directory ``path`` (``NotADirectoryError`` for anything else)."""
        return self.open_dir_named(path)[0]

    def open_dir_named(self, path: StrPath) -> tuple[int, str]:
        """A descriptor of the directory ``path`` and where the walk found it under the root
        (``""`` for the root), both from the same walk."""

        def last(dir_fd: int, name: str, where: list[str]) -> tuple[int, str]:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                if _was_link(e, dir_fd, name):
                    raise _Symlink from None
                raise
            return fd, "/".join(where if name == "." else [*where, name])

        return self.resolve(path, last)

    def lstat(self, path: StrPath) -> os.stat_result:
        """``stat`` of what ``path`` finally names, symlinks inside the root followed."""

        def last(dir_fd: int, name: str, where: list[str]) -> os.stat_result:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise _Symlink
            return st

        return self.resolve(path, last)

    def real(self, path: StrPath) -> Path:
        """The absolute path ``path`` names under the root (``..`` and inside links resolved);
        a part that does not exist yet is taken as written.

        For messages and checks only: opening this path by name again would reopen the race.
        """

        def last(dir_fd: int, name: str, where: list[str]) -> Path:
            if name == ".":
                return self.path.joinpath(*where)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise _Symlink
            return self.path.joinpath(*where, name)

        parts = self._parts(path)
        for cut in range(len(parts), -1, -1):
            try:
                base = self.resolve("/".join(parts[:cut]), last)
            except FileNotFoundError:
                continue  # a missing folder: resolve what exists, take the rest as written
            out = list(base.relative_to(self.path).parts)
            for p in parts[cut:]:
                if p == "..":
                    if not out:
                        raise PathOutsideRootError(path, self.path)
                    out.pop()
                elif p not in ("", "."):
                    out.append(p)
            return self.path.joinpath(*out)
        raise FileNotFoundError(errno.ENOENT, "root vanished", os.fspath(path))  # pragma: no cover

    def walk(self, dir_fd: int, prefix: str, max_depth: int | None = None) -> Iterator[Entry]:
        """See :func:`lanepar.tools._walk.walk`."""
        return walk(dir_fd, prefix, max_depth)


def _was_link(e: OSError, dir_fd: int, name: str) -> bool:
    """Whether an ``O_NOFOLLOW`` open failed because ``name`` was a symlink. ``ELOOP`` says so
    outright, even when the link has been swapped back for a file by now — the walk then follows
    it, finds no link and looks again (a hop) — where asking the entry again would see the file
    and pass the bare ``ELOOP`` to the caller. ``ENOTDIR`` (a directory open of a link, or of a
    file) says so only if it is a link now."""
    if e.errno in _NOFOLLOW_ERRNOS:
        return True
    return e.errno == errno.ENOTDIR and _is_link(dir_fd, name)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _want_file(mode: int, path: StrPath) -> None:
    if stat.S_ISLNK(mode):
        raise _Symlink
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(path, file_kind(mode))


def _open_nofollow(name: str, flags: int, dir_fd: int, mode: int = 0o777) -> int:
    try:
        return os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as e:
        # Swapped for a symlink since the type check: follow it by the walk's rules instead.
        if _was_link(e, dir_fd, name):
            raise _Symlink from None
        raise


def _checked_fd(fd: int, path: StrPath) -> int:
    """Keep ``fd`` only if it is a regular file (a swap after the type check is caught here)."""
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
            raise NotRegularFileError(path, file_kind(mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_new_tail(rest: collections.deque[str], depth: int, path: StrPath, root: Path) -> None:
    """Before creating a directory: the components after it are new too (no links in them), so
    a lexical count tells whether their ``..`` would climb above the root."""
    level = depth + 1
    for part in rest:
        if part in ("", "."):
            continue
        level += -1 if part == ".." else 1
        if level < 1:
            raise PathOutsideRootError(path, root)


def resolve_in_root(path: StrPath, root: StrPath) -> Path:
    """The absolute path ``path`` names under ``root``; ``PathOutsideRootError`` outside it.

    A check for callers that need a name (messages, tests). The file tools do not use it: they
    open through :class:`Root`, because a name checked now may point elsewhere when opened.
    """
    with Root(root) as r:
        return r.real(path)
