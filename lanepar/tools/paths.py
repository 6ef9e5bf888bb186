"""Keeping file tools inside their root.

An agent's tool call names paths chosen by a model, so every file tool resolves the path — symlinks
included — *before* touching it and refuses anything that lands outside the root. Checking the
resolved path (not the text) is what catches ``a/../../etc`` and a symlink pointing out of the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._exceptions import PathOutsideRootError

StrPath = str | os.PathLike[str]


#: The name this error had before it moved to :mod:`lanepar._exceptions`.
PathOutsideRoot = PathOutsideRootError


def resolve_root(root: StrPath) -> Path:
    """The root as an absolute, symlink-free path; it must exist and be a directory."""
    resolved = Path(root).resolve(strict=True)
    if not resolved.is_dir():
        raise NotADirectoryError(f"root {os.fspath(root)!r} is not a directory")
    return resolved


def resolve_in_root(path: StrPath, root: StrPath) -> Path:
    """Resolve ``path`` (relative to ``root`` unless absolute) and refuse it outside ``root``.

    The path need not exist (``write`` creates files), but whatever part of it exists is resolved
    through its symlinks, so a link inside the root that points elsewhere is refused too.
    """
    base = resolve_root(root)
    target = (base / path).resolve(strict=False)
    if not is_within(target, base):
        raise PathOutsideRootError(path, base)
    return target


def is_within(path: Path, root: Path) -> bool:
    """Whether an already resolved ``path`` is ``root`` or below it."""
    return path == root or root in path.parents


def relative_to_root(path: Path, root: Path) -> str:
    """A path under ``root`` as the forward-slash text tools return (stable across platforms)."""
    return path.relative_to(root).as_posix()
