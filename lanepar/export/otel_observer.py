"""`OTelObserver`: OpenTelemetry spans live, one as each task finishes.

An executor observer (``ex.add_observer(lp.OTelObserver())``): ``task_finished`` emits the task's
``execute_tool`` span at once — with its real start and end, so a long batch shows up in a tracing
backend while it runs — under one ``lanepar.batch`` span per batch, which ``batch_finished``
closes with the batch's mode and lane limits. Every task of a batch shares the batch's submission
time, which is how a finished task finds its batch span without the executor telling.

Hooks run on the executor's loop thread, where the caller's OpenTelemetry context is not current
(workers were started with the executor). So the batch span's parent is the ``context`` given
here, else the context current when the observer was made — make it inside your agent's span,
or export finished batches with ``lp.write_otel``, which uses the caller's context.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from .otel import SCOPE, batch_attributes, clock_offset_ns, start_task_span

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from ..trace.model import TaskRecord

#: Batches whose end never came (the observer was added mid-batch): closed oldest first.
MAX_OPEN_BATCHES = 1024


class OTelObserver:
    """Emit spans of an executor's tasks as they finish (``tracer_provider`` default: global)."""

    def __init__(self, tracer_provider: Any = None, *, context: Context | None = None) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        self._tracer = otel_trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._context = context if context is not None else otel_context.get_current()
        self._offset = clock_offset_ns()
        # submitted_ns -> (batch span, its context for children), oldest first
        self._open: collections.OrderedDict[int, tuple[Span, Context]] = collections.OrderedDict()

    def _batch(self, submitted_ns: int) -> Context:
        from opentelemetry import trace as otel_trace

        entry = self._open.get(submitted_ns)
        if entry is None:
            span = self._tracer.start_span(
                "lanepar.batch", context=self._context, start_time=submitted_ns + self._offset
            )
            entry = (span, otel_trace.set_span_in_context(span, self._context))
            self._open[submitted_ns] = entry
            while len(self._open) > MAX_OPEN_BATCHES:
                _, (old, _ctx) = self._open.popitem(last=False)
                old.end()
        return entry[1]

    def task_finished(self, record: TaskRecord) -> None:
        start_task_span(self._tracer, record, self._offset, self._batch(record.submitted_ns))

    def batch_finished(self, result: Any) -> None:
        trace = result.trace
        if trace is None or not trace.tasks:
            return
        entry = self._open.pop(trace.start_ns, None)
        if entry is None:  # the observer was added after the batch's tasks finished
            self._batch(trace.start_ns)
            entry = self._open.pop(trace.start_ns)
        span = entry[0]
        span.set_attributes(batch_attributes(trace, result.mode))
        span.set_attribute("lanepar.wall_ms", round(result.wall_s * 1e3, 6))
        span.end(end_time=max(trace.end_ns, trace.start_ns) + self._offset)

    def close(self) -> None:
        """End the batch spans still open (batches that never finished)."""
        while self._open:
            _, (span, _ctx) = self._open.popitem(last=False)
            span.end()
