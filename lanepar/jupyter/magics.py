"""``%%lanepar`` and ``%lanepar``: thin shells over the executor, the dashboard and the exporters.

A ``%%lanepar`` cell is not run by the magic itself: an input transformer turns its first line
into a marker call and an AST transformer wraps the cell body in ``with <run context>:``, the way
pyinstrument wraps a profiled cell. The cell then runs as an ordinary cell, so top-level
``await`` works (the kernel's own loop runs it) and a kernel interrupt lands in the user's code,
where ``run_batch`` cancels its batch before ``KeyboardInterrupt`` propagates. Calling the magic
directly (``run_cell_magic``) runs the same wrapped source through ``shell.run_cell``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import logging
import shlex
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display as _ipy_display

from ..config import parse_lane_limits
from ..export.html import format_summary
from .dashboard import Dashboard, trace_since
from .snapshot import snapshot_bundle
from .sweep import run_sweep

if TYPE_CHECKING:
    from ..run.executor import LaneExecutor
    from ..trace.model import Trace


def _display(*objs: Any, **kwargs: Any) -> Any:
    """IPython's ``display``, typed (IPython ships without annotations)."""
    return _ipy_display(*objs, **kwargs)  # type: ignore[no-untyped-call]


log = logging.getLogger("lanepar")

MARK = "__lanepar_cell__"
_RET = "lanepar-ret"  # not an identifier, so no user variable can collide with it
CELL_USAGE = (
    "%%lanepar [--lanes LANE=N,...] [--mode auto|parallel|sequential] [--no-live] [--hz HZ] "
    "[--export out.json|out.html]"
)
LINE_USAGE = (
    "%lanepar config [LANE=N ...] | %lanepar report | %lanepar export PATH | "
    "%lanepar sweep LANE=N1,N2,... -- EXPR | %lanepar whatif [LANE=N1,N2,... [cores=N]]"
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one ``UsageError`` line instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%%lanepar: {message}. usage: {CELL_USAGE}")


def _cell_parser() -> _Parser:
    p = _Parser(prog="%%lanepar", add_help=False)
    p.add_argument("--lanes", default="")
    p.add_argument("--mode", choices=("auto", "parallel", "sequential"), default=None)
    p.add_argument("--no-live", dest="live", action="store_false")
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--export", default=None)
    return p


def parse_cell_options(line: str) -> argparse.Namespace:
    """The ``%%lanepar`` options, validated now so a typo never starts a batch."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%%lanepar: {exc}. usage: {CELL_USAGE}") from None
    opts = _cell_parser().parse_args(words)
    try:
        opts.limits = parse_lane_limits(opts.lanes)
    except ValueError as exc:
        raise UsageError(f"%%lanepar --lanes: {exc}") from None
    if not 0 < opts.hz <= 10:
        raise UsageError(f"%%lanepar --hz {opts.hz:g}: must be > 0 and <= 10")
    if opts.export is not None and not opts.export.endswith((".json", ".html")):
        raise UsageError(f"%%lanepar --export {opts.export}: the path must end in .json or .html")
    return opts


# -- cell rewriting --------------------------------------------------------------------------
def rewrite_cell_magic(lines: list[str]) -> list[str]:
    """Input transformer: ``%%lanepar ARGS`` as first line becomes ``__lanepar_cell__('ARGS')``.

    Runs before IPython's own cell-magic transform, which would otherwise hand the body over as a
    string (and a string cannot contain a top-level ``await`` the kernel's loop will run).
    """
    if not lines:
        return lines
    first = lines[0]
    head = first.rstrip("\r\n")
    if head != "%%lanepar" and not head.startswith(("%%lanepar ", "%%lanepar\t")):
        return lines
    return [f"{MARK}({head[len('%%lanepar') :].strip()!r})\n", *lines[1:]]


class CellWrapper(ast.NodeTransformer):
    """AST transformer: a module starting with the marker call becomes
    ``with <run context>: body`` with the last expression's value still displayed."""

    def visit_Module(self, node: ast.Module) -> ast.Module:
        if not node.body or not _is_mark(node.body[0]):
            return node
        mark = node.body[0]
        assert isinstance(mark, ast.Expr) and isinstance(mark.value, ast.Call)
        args = mark.value.args[0]
        body = node.body[1:]
        tail: list[ast.stmt] = []
        if body and isinstance(body[-1], ast.Expr):
            last = body[-1]
            body[-1] = ast.Assign(targets=[ast.Name(_RET, ast.Store())], value=last.value)
            tail = [ast.Expr(ast.Name(_RET, ast.Load()))]
            ast.copy_location(body[-1], last)
            ast.copy_location(tail[0], last)
        # __import__('lanepar.jupyter.magics', fromlist=['_']).run_context(ARGS)
        ctx = ast.Call(
            ast.Attribute(
                ast.Call(
                    ast.Name("__import__", ast.Load()),
                    [ast.Constant(__name__)],
                    [ast.keyword("fromlist", ast.List([ast.Constant("run_context")], ast.Load()))],
                ),
                "run_context",
                ast.Load(),
            ),
            [args],
            [],
        )
        wrapped = ast.With(items=[ast.withitem(ctx)], body=body or [ast.Pass()])
        ast.copy_location(wrapped, mark)
        node.body = [wrapped, *tail]
        return ast.fix_missing_locations(node)


def _is_mark(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == MARK
        and len(stmt.value.args) == 1
        and isinstance(stmt.value.args[0], ast.Constant)
        and isinstance(stmt.value.args[0].value, str)
    )


def run_context(line: str) -> contextlib.AbstractContextManager[LaneExecutor]:
    """What a rewritten ``%%lanepar`` cell enters: found through the shell's magics registry,
    so the session executor is the one ``%lanepar config`` configured."""
    from IPython.core.getipython import get_ipython

    ip = get_ipython()  # type: ignore[no-untyped-call]
    magics = ip.magics_manager.registry.get("LaneparMagics") if ip is not None else None
    if magics is None:
        raise UsageError("%%lanepar: run %load_ext lanepar first")
    return magics.cell_run(line)  # type: ignore[no-any-return]


# -- the magics ------------------------------------------------------------------------------
@magics_class
class LaneparMagics(Magics):
    """The session executor, the last run, and the magics that drive them."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)  # type: ignore[no-untyped-call]
        self._executor: LaneExecutor | None = None
        self.last_trace: Trace | None = None
        self.last_summary: dict[str, Any] | None = None
        self.last_sweep: list[dict[str, Any]] | None = None
        self.last_whatif: list[dict[str, Any]] | None = None
        self.last_whatif_widget: Any = None

    @property
    def executor(self) -> LaneExecutor:
        """The session's executor, created on first use with the default lanes."""
        if self._executor is None:
            from ..run.executor import LaneExecutor

            self._executor = LaneExecutor()
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    @line_cell_magic  # type: ignore[untyped-decorator]
    def lanepar(self, line: str, cell: str | None = None) -> None:
        """Run a cell on lanepar lanes with a live dashboard, or manage the session.

        Cell: ``%%lanepar [--lanes query=16,execute=4] [--mode auto|parallel|sequential]
        [--no-live] [--hz 10] [--export out.json|out.html]``.
        Line: ``%lanepar config [lane=N ...]``, ``%lanepar report``, ``%lanepar export PATH``,
        ``%lanepar sweep query=1,2,4,8,16 -- EXPR``, ``%lanepar whatif`` (sliders) or
        ``%lanepar whatif query=8,16 [cores=4]`` (a table).
        """
        if cell is not None:
            parse_cell_options(line)  # a usage error before anything runs
            assert self.shell is not None
            self.shell.run_cell(f"{MARK}({line!r})\n{cell}", store_history=False)
            return
        cmd, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if cmd == "config":
            self._config(rest)
        elif cmd == "report":
            if rest:
                raise UsageError(f"%lanepar report takes no arguments. usage: {LINE_USAGE}")
            self._report()
        elif cmd == "export":
            self._export(rest)
        elif cmd == "sweep":
            assert self.shell is not None
            self.last_sweep = run_sweep(self.executor, self.shell.user_ns, rest)
        elif cmd == "whatif":
            from .whatif import run_whatif, whatif_widget

            if rest:
                self.last_whatif = run_whatif(self.last_trace, rest)
                return
            if self.last_trace is None or not self.last_trace.tasks:
                raise UsageError("%lanepar whatif: no traced run yet; run a %%lanepar cell first")
            self.last_whatif_widget = whatif_widget(self.last_trace)
            _display(self.last_whatif_widget)
        else:
            what = f"unknown command {cmd!r}" if cmd else "a command is needed"
            raise UsageError(f"%lanepar: {what}. usage: {LINE_USAGE}")

    # -- %%lanepar ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def cell_run(self, line: str) -> Iterator[LaneExecutor]:
        opts = parse_cell_options(line)
        ex = self.executor
        restore = self._apply_limits(ex, opts.limits)
        # --mode: the mode of every batch in the cell that does not pass one.
        mode_before = ex.default_mode
        if opts.mode is not None:
            ex.default_mode = opts.mode
        base, t0 = ex.recorder.recorded, time.perf_counter_ns()
        dash: Dashboard | None = None
        handle: Any = None
        if opts.live:
            dash = Dashboard(ex, hz=opts.hz, title="%%lanepar")
            handle = _display(dash, display_id=True)
        status = "done"
        try:
            with ex.activate():
                yield ex
        except KeyboardInterrupt:
            status = "interrupted"
            ex.cancel()
            raise
        except BaseException:
            status = "error"
            ex.cancel()
            raise
        finally:
            try:
                # taken before the limits go back, so the trace carries the limits it ran with
                trace = trace_since(ex, base, t0)
                if status == "done" and any(e["type"] == "interrupted" for e in trace.events):
                    status = "interrupted"  # run_batch returned what finished after a Ctrl-C
            finally:
                ex.default_mode = mode_before
                for lane, n in restore.items():
                    ex.set_concurrency(lane, n)
            try:
                self._finish(trace, dash, handle, status, opts.export)
            except Exception:  # never hide the cell's own exception behind ours
                log.exception("lanepar: could not show the run summary")

    def _apply_limits(self, ex: LaneExecutor, limits: dict[str, int]) -> dict[str, int]:
        lanes = ex.lanes
        unknown = [n for n in limits if n not in lanes]
        if unknown:
            raise UsageError(
                f"%%lanepar --lanes: unknown lane {unknown[0]!r}; lanes are {', '.join(lanes)}"
            )
        before = {n: lanes[n].limit for n in limits}
        for n, v in limits.items():
            ex.set_concurrency(n, v)
        return before

    def _finish(
        self,
        trace: Trace,
        dash: Dashboard | None,
        handle: Any,
        status: str,
        export: str | None,
    ) -> None:
        from ..analysis.summary import summarize

        summary = summarize(trace)
        if dash is not None:
            dash.finish(trace, status=status, summary=summary)
        self.last_trace, self.last_summary = trace, summary
        if trace.tasks:
            bundle: dict[str, Any] = snapshot_bundle(trace, summary, title=f"%%lanepar ({status})")
        else:
            bundle = {"text/plain": "lanepar: no tasks ran in this cell"}
        if handle is not None:
            handle.update(bundle, raw=True)
        else:
            _display(bundle, raw=True)
        if dash is not None:
            dash.close()
        if export:
            self._write(trace, export)

    # -- %lanepar ----------------------------------------------------------------------------
    def _config(self, rest: str) -> None:
        ex = self.executor
        if rest:
            try:
                limits = parse_lane_limits(",".join(rest.split()))
            except ValueError as exc:
                raise UsageError(f"%lanepar config: {exc}") from None
            self._apply_limits(ex, limits)
        lines = [f"{'lane':<10} {'kind':<8} {'limit':>5} {'min':>4} {'priority':>8}"]
        for name, row in ex.lane_table().items():
            lines.append(
                f"{name:<10} {row['kind']:<8} {row['max_concurrency']:>5} "
                f"{row['min_concurrency']:>4} {row['priority']:>8}"
            )
        print("\n".join(lines))

    def _need_last(self, what: str) -> tuple[Trace, dict[str, Any]]:
        if self.last_trace is None or self.last_summary is None:
            raise UsageError(f"%lanepar {what}: no %%lanepar run yet in this session")
        return self.last_trace, self.last_summary

    def _report(self) -> None:
        trace, summary = self._need_last("report")
        if not trace.tasks:
            print(format_summary(summary))
            return
        _display(snapshot_bundle(trace, summary, title="%%lanepar (last run)"), raw=True)

    def _export(self, rest: str) -> None:
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise UsageError(f"%lanepar export: {exc}") from None
        if len(words) != 1:
            raise UsageError(f"%lanepar export takes one PATH. usage: {LINE_USAGE}")
        if not words[0].endswith((".json", ".html")):
            raise UsageError(f"%lanepar export {words[0]}: the path must end in .json or .html")
        trace, _ = self._need_last("export")
        self._write(trace, words[0])

    def _write(self, trace: Trace, path: str) -> None:
        if path.endswith(".html"):
            from ..export.html import write_html

            write_html(trace, path)
        else:
            from ..export.chrome import write_perfetto

            write_perfetto(trace, path)
        print(f"lanepar: wrote {path}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lanepar``: register the magics and the two transformers (idempotent)."""
    ipython.register_magics(LaneparMagics(ipython))
    if rewrite_cell_magic not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(rewrite_cell_magic)
    if not any(isinstance(t, CellWrapper) for t in ipython.ast_transformers):
        ipython.ast_transformers.append(CellWrapper())


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the transformers and stop the session executor."""
    if rewrite_cell_magic in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(rewrite_cell_magic)
    ipython.ast_transformers[:] = [
        t for t in ipython.ast_transformers if not isinstance(t, CellWrapper)
    ]
    magics = ipython.magics_manager.registry.pop("LaneparMagics", None)
    if magics is not None:
        magics.close()
