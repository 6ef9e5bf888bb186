"""lanepar: a lane executor for AI-agent tool batches, and a live profiler of it.

The public names are re-exported here from their rooms; ``tests/test_public_api.py`` pins
``__all__`` so nothing public disappears by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .batch import BatchResult as BatchResult
from .batch import TaskHandle as TaskHandle
from .config import DEFAULT_LANES as DEFAULT_LANES
from .config import LaneConfig as LaneConfig
from .executor import LaneExecutor as LaneExecutor
from .executor import current as current
from .lane import TaskCancelledError as TaskCancelledError
from .lane import TaskTimeoutError as TaskTimeoutError
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

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANES",
    "BatchResult",
    "Dashboard",
    "LaneConfig",
    "LaneExecutor",
    "OTelObserver",
    "Sample",
    "TaskCancelledError",
    "TaskHandle",
    "TaskRecord",
    "TaskTimeoutError",
    "ToolCall",
    "Trace",
    "__version__",
    "current",
    "from_otel",
    "load_ipython_extension",
    "load_trace",
    "phase",
    "registered_tools",
    "tool",
    "write_otel",
]


def load_trace(path: Any) -> Trace:
    """Read a trace written by ``Trace.to_chrome_trace`` (or lanepar's own JSON) back."""
    from .export.load import load_trace as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    """``lanepar.Dashboard`` and the OpenTelemetry doors are imported on first use: anywidget,
    ipywidgets and OpenTelemetry are heavy (or absent) and a headless run never needs them."""
    if name == "Dashboard":
        from .jupyter.dashboard import Dashboard

        return Dashboard
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
