"""OpenTelemetry, both directions: a trace out as ``execute_tool`` spans, and such spans back in.

Out: one span per task, named and attributed by the GenAI semantic conventions (``execute_tool
{tool}``, INTERNAL, ``gen_ai.operation.name``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``error.type``), plus what the conventions have no words for under ``lanepar.*``: lane, outcome,
attempt and the queued / dispatch / CPU / wait / GIL / run-queue split. A span starts when the
body started, so a waterfall shows the real overlap; the queue wait before it is an attribute and
an event at submission. Spans hang under one ``lanepar.batch`` span, itself under the caller's
current context, so an agent framework's span is the parent.

In: ``execute_tool`` spans recorded by any framework (SDK ``ReadableSpan``s or OTLP JSON) become
a :class:`Trace`. Spans lanepar wrote carry the full split; anybody else's carry wall time only,
which the trace then says (an ``import`` event and ``timing`` in its lane table), counting the
body as wait. OpenTelemetry is imported only by the writer, so reading needs no SDK.
"""

from ._in import from_otel as from_otel
from ._out import SCOPE as SCOPE
from ._out import batch_attributes as batch_attributes
from ._out import clock_offset_ns as clock_offset_ns
from ._out import start_task_span as start_task_span
from ._out import write_otel as write_otel

__all__ = [
    "SCOPE",
    "batch_attributes",
    "clock_offset_ns",
    "from_otel",
    "start_task_span",
    "write_otel",
]
