"""A progress bar for long studies: an ipywidgets bar in a notebook, a text bar on a terminal.

``lanepar.bench.scalability`` runs for tens of seconds and a limit sweep for as long as its runs
take; a cell that shows nothing for that long reads as hung. In a notebook the bar is an
``ipywidgets.IntProgress`` with a label; on a terminal, one line on stderr redrawn in place;
anywhere else (a pipe, a test) nothing at all, so logs stay clean.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def _in_kernel() -> bool:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()  # type: ignore[no-untyped-call]
    return ip is not None and getattr(ip, "kernel", None) is not None


class ProgressBar:
    """``bar(done, total, label)`` moves it; ``close()`` ends it (the widget stays, full)."""

    def __init__(self, total: int, label: str = "", *, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.label = label
        self._widget: Any = None
        self._text: Any = None
        self._stream: TextIO | None = None
        if stream is None and _in_kernel():
            import ipywidgets as w
            from IPython.display import display

            self._widget = w.IntProgress(value=0, min=0, max=self.total, bar_style="info")
            self._text = w.Label(self._caption())
            display(w.HBox([self._widget, self._text]))  # type: ignore[no-untyped-call]
        else:
            out = stream if stream is not None else sys.stderr
            self._stream = out if out.isatty() or stream is not None else None
        self._draw()

    def _caption(self) -> str:
        return f"{self.done}/{self.total} {self.label}".rstrip()

    def __call__(self, done: int, total: int | None = None, label: str | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        if label is not None:
            self.label = label
        self.done = min(done, self.total)
        self._draw()

    def _draw(self) -> None:
        if self._widget is not None:
            self._widget.max = self.total
            self._widget.value = self.done
            self._text.value = self._caption()
        elif self._stream is not None:
            width = 28
            filled = int(width * self.done / self.total)
            self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self._caption()}"
                               "\x1b[K")  # fmt: skip
            self._stream.flush()

    def close(self) -> None:
        if self._widget is not None:
            self._widget.bar_style = "success"
        elif self._stream is not None:
            self._stream.write("\n")
            self._stream.flush()
