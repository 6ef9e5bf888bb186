"""Every exception a public lanepar function can raise, in one place.

Kept in a leaf module (stdlib only) so that every room — tools, backends, trace loading, the run
loop — can raise them without importing each other, and users can catch them from ``lanepar``.
"""

from __future__ import annotations

import errno
import os

StrPath = str | os.PathLike[str]


class LaneConfigError(ValueError):
    """A lane table, a limit or an executor option is invalid; the message names the field."""


class UnknownToolError(KeyError):
    """A ``ToolCall`` names a tool that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class TaskTimeoutError(TimeoutError):
    """A task ran longer than its lane's (or its call's) ``timeout_s``."""


class TaskCancelledError(Exception):
    """A task was cancelled (batch cancelled, ``fail_fast``, executor closing) before it ended."""


class ToolExitError(RuntimeError):
    """A tool raised ``SystemExit`` or ``KeyboardInterrupt`` (argparse and click exit on bad
    arguments): that is the task's error, never the executor's end. ``__cause__`` holds it."""


class NestedBatchError(RuntimeError):
    """A batch submitted from inside a running task cannot make progress: every slot of a lane
    it needs is held by a task waiting for a nested batch."""


class WorkerDiedError(RuntimeError):
    """The process (or remote worker) running a task exited or could not start before it
    answered; the task fails with this error and its siblings are unaffected."""


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


class TraceFormatError(ValueError):
    """The file is not a trace lanepar can read; the message names the file and the problem."""
