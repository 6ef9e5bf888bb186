"""Observers: the one seam through which anything watches an executor run.

Modelled on trio's ``Instruments``: an observer is any object defining some of the hooks below;
each hook keeps its own list of bound methods, so a hook nobody defines costs one falsy-list
check on the hot path. An observer that raises is removed and logged — never allowed to break
the batch it watches, lose its results, or wedge the lane that called it.

Hooks (all optional, all called on the executor's loop thread):

- ``task_finished(record: TaskRecord)`` — after each task, with its trace record;
- ``batch_finished(result: BatchResult)`` — after each batch, before the caller gets it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("lanepar")

HOOKS: tuple[str, ...] = ("task_finished", "batch_finished")


class Observers:
    """Per-hook lists of bound methods, with remove-and-log on failure."""

    __slots__ = ("_observers", "batch_finished", "task_finished")

    def __init__(self) -> None:
        self._observers: list[Any] = []
        #: Bound hooks, read directly by the run loop: ``if hooks.task_finished: ...``.
        self.task_finished: list[Any] = []
        self.batch_finished: list[Any] = []

    def add(self, observer: Any) -> None:
        if observer in self._observers:
            return
        hooks = [h for h in HOOKS if callable(getattr(observer, h, None))]
        if not hooks:
            raise TypeError(
                f"{observer!r} is not an observer: it defines none of {', '.join(HOOKS)}"
            )
        self._observers.append(observer)
        for h in hooks:
            getattr(self, h).append(getattr(observer, h))

    def remove(self, observer: Any) -> None:
        """Stop calling ``observer``; removing one that is not there is a no-op."""
        if observer not in self._observers:
            return
        self._observers.remove(observer)
        for h in HOOKS:
            lst: list[Any] = getattr(self, h)
            mine = getattr(observer, h, None)
            lst[:] = [m for m in lst if m != mine]

    def __contains__(self, observer: Any) -> bool:
        return observer in self._observers

    def __iter__(self) -> Any:
        return iter(list(self._observers))

    def emit(self, hook: str, arg: Any) -> None:
        """Call every ``hook`` method with ``arg``; a raising observer is removed and logged."""
        for method in list(getattr(self, hook)):
            try:
                method(arg)
            except Exception:
                owner = next((o for o in self._observers if getattr(o, hook, None) == method), None)
                log.exception("lanepar: observer %r raised in %s; it is removed", owner, hook)
                if owner is not None:
                    self.remove(owner)


def is_observer(obj: object) -> bool:
    """Whether ``obj`` defines any observer hook."""
    return any(callable(getattr(obj, h, None)) for h in HOOKS)
