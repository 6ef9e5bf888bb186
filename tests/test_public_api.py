"""The public face: every name in ``__all__`` exists, and the contract names are there."""

from __future__ import annotations

import inspect

import lanepar as lp

CONTRACT = {
    "LaneConfig", "DEFAULT_LANES", "ToolCall", "tool", "LaneExecutor", "BatchResult",
    "load_trace", "phase", "current", "load_ipython_extension", "Trace", "TaskRecord",
    "Dashboard", "write_otel", "OTelObserver", "from_otel",
}  # fmt: skip


def test_all_names_exist_and_contract_is_exported() -> None:
    for name in lp.__all__:
        assert hasattr(lp, name), name
    assert set(lp.__all__) >= CONTRACT


def test_signatures_match_the_contract() -> None:
    cfg = inspect.signature(lp.LaneConfig)
    for p in ("min_concurrency", "max_concurrency", "kind", "priority", "timeout_s", "retries"):
        assert p in cfg.parameters
    ex = inspect.signature(lp.LaneExecutor)
    assert list(ex.parameters)[:3] == ["lanes", "max_total", "trace"]
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
