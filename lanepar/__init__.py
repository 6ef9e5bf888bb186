"""lanepar: a lane executor for AI-agent tool batches, and a live profiler of it.

The pipeline, one room each: ``tools`` (what a call is) → ``run`` (executor, lanes, batches) →
``backends`` (where a body runs) → ``trace`` (records, samples, observers) → ``analysis`` (pure
functions of a trace) → ``export`` (files) → ``jupyter`` (thin shells). ``policy`` plugs auto mode
and adaptive limits into ``run``'s seams. This module is the public face only:
``tests/test_public_api.py`` pins ``__all__`` exactly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import policy as _policy  # registers auto mode and adaptive limits with the run loop
from ._exceptions import LaneConfigError as LaneConfigError
from ._exceptions import NestedBatchError as NestedBatchError
from ._exceptions import NotRegularFileError as NotRegularFileError
from ._exceptions import PathOutsideRootError as PathOutsideRootError
from ._exceptions import TaskCancelledError as TaskCancelledError
from ._exceptions import TaskTimeoutError as TaskTimeoutError
from ._exceptions import ToolExitError as ToolExitError
from ._exceptions import TraceFormatError as TraceFormatError
from ._exceptions import UnknownToolError as UnknownToolError
from ._exceptions import WorkerDiedError as WorkerDiedError
from .config import DEFAULT_LANES as DEFAULT_LANES
from .config import LaneConfig as LaneConfig
from .run._seams import Decision as Decision
from .run._seams import LaneView as LaneView
from .run.batch import BatchResult as BatchResult
from .run.batch import TaskHandle as TaskHandle
from .run.executor import LaneExecutor as LaneExecutor
from .run.executor import current as current
from .tools.registry import ToolCall as ToolCall
from .tools.registry import registered_tools as registered_tools
from .tools.registry import tool as tool
from .trace.model import Sample as Sample
from .trace.model import TaskRecord as TaskRecord
from .trace.model import Trace as Trace
from .trace.probe import phase as phase

if TYPE_CHECKING:  # the real imports are lazy (module __getattr__ below)
    from .export.otel import from_otel as from_otel
    from .export.otel import write_otel as write_otel
    from .export.otel_observer import OTelObserver as OTelObserver
    from .jupyter.dashboard import Dashboard as Dashboard
    from .jupyter.whatif import whatif_widget as whatif_widget

del _policy

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANES",
    "BatchResult",
    "Dashboard",
    "Decision",
    "LaneConfig",
    "LaneConfigError",
    "LaneExecutor",
    "LaneView",
    "NestedBatchError",
    "NotRegularFileError",
    "OTelObserver",
    "PathOutsideRootError",
    "Sample",
    "TaskCancelledError",
    "TaskHandle",
    "TaskRecord",
    "TaskTimeoutError",
    "ToolCall",
    "ToolExitError",
    "Trace",
    "TraceFormatError",
    "UnknownToolError",
    "WorkerDiedError",
    "__version__",
    "current",
    "from_otel",
    "load_ipython_extension",
    "load_trace",
    "phase",
    "registered_tools",
    "replay",
    "summarize",
    "tool",
    "whatif_widget",
    "write_html",
    "write_otel",
    "write_perfetto",
]


def summarize(trace: Trace) -> dict[str, Any]:
    """Totals, speedup, latency percentiles, CPU use and a per-lane breakdown of ``trace``."""
    from .analysis.summary import summarize as _summarize

    return _summarize(trace)


def replay(
    trace: Trace, lanes: dict[str, int] | None = None, cores: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """What-if: simulate ``trace``'s tasks under other lane limits and core counts."""
    from .analysis.replay import replay as _replay

    return _replay(trace, lanes=lanes, cores=cores, **kwargs)


def write_perfetto(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as Perfetto / chrome://tracing JSON (``.gz`` compresses)."""
    from .export.chrome import write_perfetto as _write

    _write(trace, path)


def write_html(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write a self-contained HTML report of ``trace``; needs the ``lab`` extra (plotly)."""
    from .export.html import write_html as _write

    _write(trace, path)


def load_trace(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Trace:
    """Read a trace written by ``write_perfetto`` (or lanepar's own JSON) back; a file that is
    not one, or is larger than ``max_bytes`` (default 256 MiB, also after decompression),
    raises :class:`TraceFormatError` naming the problem."""
    from .export.load import load_trace as _load

    return _load(path, max_bytes=max_bytes)


def __getattr__(name: str) -> Any:
    """``lanepar.Dashboard``, ``lanepar.whatif_widget`` and the OpenTelemetry doors are imported
    on first use: anywidget, ipywidgets and OpenTelemetry are heavy (or absent) and a headless run
    never needs them."""
    if name == "Dashboard":
        from .jupyter.dashboard import Dashboard

        return Dashboard
    if name == "whatif_widget":
        from .jupyter.whatif import whatif_widget

        return whatif_widget
    if name in ("write_otel", "from_otel"):
        from .export import otel

        return getattr(otel, name)
    if name == "OTelObserver":
        from .export.otel_observer import OTelObserver

        return OTelObserver
    raise AttributeError(f"module 'lanepar' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lanepar``: imported lazily so ``import lanepar`` stays light headless."""
    from .jupyter.magics import load_ipython_extension as _load

    _load(ipython)
