"""The public face: every name in ``__all__`` exists, and the contract names are there."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import lanepar as lp

#: Exactly the public names: adding or removing one is a decision, so it changes this list too.
PUBLIC = {
    "DEFAULT_LANES", "BatchResult", "Dashboard", "Decision", "LaneConfig", "LaneConfigError",
    "LaneExecutor", "LaneView", "NestedBatchError", "NotRegularFileError", "ToolExitError",
    "PathOutsideRootError", "Sample", "TaskCancelledError",
    "TaskHandle", "TaskRecord", "TaskTimeoutError", "ToolCall", "Trace", "TraceFormatError",
    "UnknownToolError", "WorkerDiedError", "__version__", "current", "load_ipython_extension",
    "load_trace", "phase", "registered_tools", "replay", "summarize", "tool", "write_html",
    "write_perfetto", "write_otel", "OTelObserver", "from_otel", "whatif_widget",
}  # fmt: skip


def test_all_is_exactly_the_public_names_and_each_exists() -> None:
    assert sorted(lp.__all__) == sorted(PUBLIC)
    assert len(lp.__all__) == len(set(lp.__all__))
    for name in lp.__all__:
        assert hasattr(lp, name), name


def test_every_public_exception_is_exported_from_the_package() -> None:
    from lanepar import _exceptions

    for name, obj in vars(_exceptions).items():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert getattr(lp, name) is obj, name


def test_default_lanes_are_read_only() -> None:
    with pytest.raises(TypeError):
        lp.DEFAULT_LANES["query"] = lp.LaneConfig()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        lp.DEFAULT_LANES["query"].max_concurrency = 99  # type: ignore[misc]


def test_executor_options_are_keywords_and_lanes_are_views() -> None:
    with pytest.raises(TypeError):
        lp.LaneExecutor(None, 4)  # type: ignore[misc]
    ex = lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=3)}, max_total=5)
    view = ex.lanes["q"]
    assert (view.name, view.kind, view.limit, view.active, view.pending) == ("q", "async", 3, 0, 0)
    assert view.config == lp.LaneConfig(max_concurrency=3)
    with pytest.raises(AttributeError):
        view.limit = 9  # type: ignore[misc]
    assert not hasattr(view, "queue") and not hasattr(view, "workers")
    ex.set_concurrency("q", 4)
    assert view.limit == 4  # a live read
    ex.lanes["q"] = view  # the mapping is a copy: the executor's own table is untouched
    assert isinstance(ex.snapshot(), lp.Trace)


def test_signatures_match_the_contract() -> None:
    cfg = inspect.signature(lp.LaneConfig)
    for p in ("min_concurrency", "max_concurrency", "kind", "priority", "timeout_s", "retries"):
        assert p in cfg.parameters
    ex = inspect.signature(lp.LaneExecutor)
    assert list(ex.parameters)[:3] == ["lanes", "max_total", "trace"]
    kinds = [ex.parameters[n].kind for n in ("max_total", "trace")]
    assert kinds == [inspect.Parameter.KEYWORD_ONLY] * 2
    assert list(inspect.signature(lp.LaneExecutor.run_batch).parameters)[:3] == [
        "self", "calls", "mode",
    ]  # fmt: skip
    d = lp.DEFAULT_LANES
    assert (d["control"].min_concurrency, d["control"].max_concurrency, d["control"].priority) == (
        1,
        4,
        0,
    )
    assert (d["query"].min_concurrency, d["query"].max_concurrency, d["query"].priority) == (
        2,
        16,
        1,
    )
    assert (d["execute"].max_concurrency, d["execute"].priority, d["execute"].kind) == (
        4,
        2,
        "thread",
    )
    assert (d["generate"].max_concurrency, d["generate"].priority) == (2, 3)


def test_import_stays_light() -> None:
    import subprocess
    import sys

    heavy = (
        "('IPython', 'anywidget', 'plotly', 'distributed', 'opentelemetry', 'langgraph', "
        "'langchain_core', 'agents', 'pydantic_ai', 'mcp', 'openai')"
    )
    code = f"import sys, lanepar; print(','.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_integrations_import_their_framework_only_when_imported() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lanepar, lanepar.integrations, lanepar.integrations.openai; "
        "lanepar.from_otel([]); "
        "print(','.join(m for m in ('opentelemetry', 'openai', 'langgraph', 'agents', "
        "'pydantic_ai', 'mcp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
