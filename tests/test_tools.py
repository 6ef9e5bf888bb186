"""The built-in tools on real files and real processes, alone and through a LaneExecutor."""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import run_virtual, vnow

import lanepar as lp
from lanepar.config import TOOL_LANES
from lanepar.tools import builtins as bt
from lanepar.tools.beneath import resolve_in_root
from lanepar.tools.paths import PathOutsideRoot
from lanepar.tools.workload import STDLIB_FILES, default_root, demo_calls

BACKENDS = ["asyncio", "trio"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with text, a subfolder, a binary and a non-UTF-8 file; secret.txt sits outside."""
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\nbeta\nalphabet\n")
    (root / "sub" / "b.py").write_text("import os\n\ndef alpha():\n    return 1\n")
    (root / "sub" / "deep" / "c.py").write_text("x = 'alpha'\n")
    (root / "bin.dat").write_bytes(b"alpha\0\x01\x02alpha")
    (root / "latin.txt").write_bytes("alpha caf\xe9\n".encode("latin-1"))
    (tmp_path / "secret.txt").write_text("alpha secret\n")
    return root


# -- confinement ---------------------------------------------------------------------------
def test_resolve_in_root_accepts_inside_paths(tree: Path) -> None:
    assert resolve_in_root("sub/b.py", tree) == (tree / "sub" / "b.py").resolve()
    assert resolve_in_root("sub/../a.txt", tree) == (tree / "a.txt").resolve()
    assert resolve_in_root(tree / "a.txt", tree) == (tree / "a.txt").resolve()
    assert resolve_in_root(".", tree) == tree.resolve()
    assert resolve_in_root("new/file.txt", tree) == tree.resolve() / "new" / "file.txt"


@pytest.mark.parametrize("bad", ["..", "../secret.txt", "sub/../../secret.txt", "/etc/passwd"])
def test_resolve_in_root_refuses_escapes(tree: Path, bad: str) -> None:
    with pytest.raises(PathOutsideRoot) as info:
        resolve_in_root(bad, tree)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert repr(bad) in message and str(tree.resolve()) in message


def test_symlink_escaping_root_is_refused_but_inside_link_works(tree: Path) -> None:
    (tree / "out").symlink_to(tree.parent / "secret.txt")
    (tree / "outdir").symlink_to(tree.parent, target_is_directory=True)
    (tree / "in").symlink_to(tree / "a.txt")
    with pytest.raises(PathOutsideRoot):
        bt.read("out", root=tree)
    with pytest.raises(PathOutsideRoot):
        bt.read("outdir/secret.txt", root=tree)
    assert bt.read("in", root=tree) == "alpha\nbeta\nalphabet\n"
    # Discovery must not reveal what reading would refuse.
    assert "out" not in bt.glob("*", root=tree)
    assert not [p for p in bt.list_files(root=tree) if p.startswith("outdir/")]
    assert "out" not in bt.hash(".", root=tree)


def test_path_outside_root_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(PathOutsideRoot("../x", "/r")))
    assert isinstance(err, PathOutsideRoot) and (err.path, err.root) == ("../x", "/r")
    assert str(err) == str(PathOutsideRoot("../x", "/r"))


@pytest.mark.parametrize(
    "call",
    [
        lambda r: bt.read("../secret.txt", root=r),
        lambda r: bt.write("../evil.txt", "x", root=r),
        lambda r: bt.ls("..", root=r),
        lambda r: bt.grep("alpha", path="..", root=r),
        lambda r: bt.hash("../secret.txt", root=r),
        lambda r: bt.parse("/etc/passwd", root=r),
        lambda r: bt.list_files("..", root=r),
    ],
)
def test_every_file_tool_refuses_outside_paths(tree: Path, call: Any) -> None:
    with pytest.raises(PathOutsideRoot):
        call(tree)
    assert not (tree.parent / "evil.txt").exists()


@pytest.mark.parametrize("pattern", ["/etc/*", "../*", "sub/../../*", ""])
def test_glob_refuses_absolute_and_parent_patterns(tree: Path, pattern: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        bt.glob(pattern, root=tree)


# -- file tools ------------------------------------------------------------------------------
def test_read_replaces_undecodable_bytes(tree: Path) -> None:
    assert bt.read("a.txt", root=tree) == "alpha\nbeta\nalphabet\n"
    assert bt.read("latin.txt", root=tree) == "alpha caf\ufffd\n"
    with pytest.raises(FileNotFoundError):
        bt.read("missing.txt", root=tree)


def test_write_creates_parents_and_round_trips(tree: Path) -> None:
    assert bt.write("new/dir/x.txt", "héllo", root=tree) == len("héllo".encode())
    assert (tree / "new" / "dir" / "x.txt").read_text(encoding="utf-8") == "héllo"


def _glob_reference(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """pathlib's component glob, written as its definition (no memo, no fast path)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_reference(pattern[1:], parts[k:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_reference(
        pattern[1:], parts[1:]
    )


@given(
    st.lists(st.sampled_from(["a", "b", "*", "?", "a*", "[ab]", "**"]), min_size=1, max_size=4),
    st.lists(st.sampled_from(["a", "b", "ab", "ba", "x"]), min_size=1, max_size=5),
)
def test_glob_component_match_is_pathlib_s_definition(pattern: list[str], parts: list[str]) -> None:
    pat, path = tuple(pattern), tuple(parts)
    assert bt._matches(pat, path) == _glob_reference(pat, path)


def test_glob_list_files_and_ls(tree: Path) -> None:
    assert bt.glob("**/*.py", root=tree) == ["sub/b.py", "sub/deep/c.py"]
    assert bt.glob("*", root=tree) == ["a.txt", "bin.dat", "latin.txt", "sub"]
    assert bt.list_files(root=tree) == [
        "a.txt",
        "bin.dat",
        "latin.txt",
        "sub/b.py",
        "sub/deep/c.py",
    ]
    assert bt.list_files("sub", root=tree) == ["sub/b.py", "sub/deep/c.py"]
    assert bt.ls(root=tree) == ["a.txt", "bin.dat", "latin.txt", "sub/"]
    assert bt.ls("sub", root=tree) == ["b.py", "deep/"]


def test_grep_regex_lines_and_skips_binary(tree: Path) -> None:
    hits = bt.grep(r"^alpha\w*$", root=tree)
    assert hits == [
        {"path": "a.txt", "line": 1, "text": "alpha"},
        {"path": "a.txt", "line": 3, "text": "alphabet"},
    ]
    # bin.dat (NUL byte) and latin.txt (not UTF-8) are skipped, not failed.
    paths = {h["path"] for h in bt.grep("alpha", root=tree)}
    assert paths == {"a.txt", "sub/b.py", "sub/deep/c.py"}
    assert bt.grep(r"def \w+\(", path="sub", root=tree, glob="*.py") == [
        {"path": "sub/b.py", "line": 3, "text": "def alpha():"}
    ]
    assert [h["line"] for h in bt.grep("a", path="a.txt", root=tree)] == [1, 2, 3]
    assert len(bt.grep("a", root=tree, max_matches=2)) == 2
    with pytest.raises(re.error):
        bt.grep("(unclosed", root=tree)


def test_hash_file_and_folder(tree: Path) -> None:
    assert bt.hash("a.txt", root=tree) == hashlib.sha256(b"alpha\nbeta\nalphabet\n").hexdigest()
    digests = bt.hash("sub", root=tree)
    assert isinstance(digests, dict)
    assert sorted(digests) == ["sub/b.py", "sub/deep/c.py"]
    assert digests["sub/deep/c.py"] == hashlib.sha256(b"x = 'alpha'\n").hexdigest()


PY_SOURCE = """\
import os


class A:
    def m(self):
        def inner():
            return 1
        return inner


class B(A):
    async def am(self):
        return 2


def top(x):
    return x
"""


def test_parse_counts(tree: Path) -> None:
    (tree / "m.py").write_text(PY_SOURCE)
    out = bt.parse("m.py", root=tree)
    assert out["path"] == "m.py"
    assert (out["functions"], out["classes"], out["lines"]) == (4, 2, 17)
    assert out["nodes"] == sum(1 for _ in ast.walk(ast.parse(PY_SOURCE)))
    (tree / "bad.py").write_text("def (:\n")
    with pytest.raises(SyntaxError):
        bt.parse("bad.py", root=tree)


def test_parse_survives_another_threads_parse_but_not_real_errors(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython 3.11 fails an ``ast.parse`` that overlaps one on another thread with a spurious
    ``SystemError`` (python/cpython#106905), and frameworks parse on their own threads: that
    error alone is retried; any other error is the tool's."""
    (tree / "m.py").write_text(PY_SOURCE)
    real = ast.parse
    failures = [SystemError("AST constructor recursion depth mismatch (before=2, after=5)")]

    def racy(*args: Any, **kwargs: Any) -> ast.Module:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(bt.ast, "parse", racy)
    assert bt.parse("m.py", root=tree)["classes"] == 2
    failures.append(SystemError("some other interpreter trouble"))
    with pytest.raises(SystemError, match="other interpreter trouble"):
        bt.parse("m.py", root=tree)


# -- bash ----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", ["ls -l", b"ls", "rm -rf /"])
def test_bash_refuses_strings(tree: Path, argv: Any) -> None:
    with pytest.raises(TypeError, match="not a string"):
        anyio.run(bt.bash, argv, tree)


def test_bash_refuses_bad_argv(tree: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        anyio.run(bt.bash, [], tree)
    with pytest.raises(TypeError, match="int"):
        bad: list[Any] = ["echo", 3]
        anyio.run(bt.bash, bad, tree)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bash_runs_in_root_and_captures_output(tree: Path, backend: str) -> None:
    code = "import os, sys; print(os.getcwd()); print('oops', file=sys.stderr); sys.exit(3)"
    out = anyio.run(bt.bash, [sys.executable, "-c", code], tree, backend=backend)
    assert out["returncode"] == 3
    assert out["stdout"].strip() == str(tree.resolve())
    assert out["stderr"].strip() == "oops"


@pytest.mark.parametrize("backend", BACKENDS)
def test_bash_timeout_kills_the_process(tree: Path, backend: str) -> None:
    # The child would sleep for an hour: only a kill ends it before the test's own timeout.
    code = "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(3600)"

    async def main() -> None:
        with pytest.raises(TimeoutError, match=r"timeout_s=0\.5"):
            await bt.bash([sys.executable, "-c", code], root=tree, timeout_s=0.5)

    anyio.run(main, backend=backend)
    pid = int((tree / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not a zombie
        os.kill(pid, 0)


def test_bash_killed_when_its_task_times_out_in_the_executor(tree: Path) -> None:
    # A lane-level timeout cancels the body; the child must die with it, not outlive the task.
    code = "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(3600)"
    call = lp.ToolCall("bash", [sys.executable, "-c", code], root=str(tree)).options(timeout_s=2.0)
    with lp.LaneExecutor() as ex:
        b = ex.run_batch([call, lp.ToolCall("read", "a.txt", root=str(tree))])
    assert isinstance(b.errors[0], lp.TaskTimeoutError)
    assert b.results[1] == "alpha\nbeta\nalphabet\n"
    pid = int((tree / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- generate ------------------------------------------------------------------------------
def test_generate_is_labelled_simulated_deterministic_and_takes_its_latency() -> None:
    assert "SIMULATED" in (bt.generate.__doc__ or "")

    async def timed() -> tuple[dict[str, Any], float]:
        t0 = vnow()
        out = await bt.generate("hello", 40, 0.05, 0.002)
        return out, vnow() - t0

    out, elapsed = run_virtual(timed)
    # the latency it simulates, exactly, on a virtual clock: time to first token + per token
    assert elapsed == pytest.approx(0.05 + 40 * 0.002)
    assert out["simulated"] is True and out["tokens"] == 40
    assert len(out["text"].split()) == 40
    again = anyio.run(bt.generate, "hello", 40, 0.0, 0.0)
    assert again["text"] == out["text"]
    assert anyio.run(bt.generate, "other prompt", 40, 0.0, 0.0)["text"] != out["text"]
    assert anyio.run(bt.generate, "x", 0, 0.0, 0.0) == {"simulated": True, "text": "", "tokens": 0}
    with pytest.raises(ValueError):
        anyio.run(bt.generate, "x", -1)


# -- through the executor -----------------------------------------------------------------
def test_registry_has_every_builtin_in_its_lane() -> None:
    tools = lp.registered_tools()
    names = ["read", "write", "glob", "list_files", "ls", "grep", "hash", "parse", "bash"]
    for name in [*names, "generate", "fetch"]:
        assert name in tools
    assert tools["parse"].cpu_bound and not tools["grep"].cpu_bound
    assert tools["fetch"].lane == "query"


def test_each_builtin_through_the_executor(tree: Path) -> None:
    d = str(tree)
    calls = [
        lp.ToolCall("read", path="a.txt", root=d),
        lp.ToolCall("write", "out/w.txt", "written", root=d),
        lp.ToolCall("glob", "**/*.py", root=d),
        lp.ToolCall("list_files", "sub", root=d),
        lp.ToolCall("ls", "sub", root=d),
        lp.ToolCall("grep", "beta", root=d),
        lp.ToolCall("hash", "a.txt", root=d),
        lp.ToolCall("parse", "sub/b.py", root=d),
        lp.ToolCall("bash", ["git", "--version"], root=d),
        lp.ToolCall("generate", "hi", tokens=8, ttft_s=0.01, per_token_s=0.001),
        lp.ToolCall("read", "../secret.txt", root=d),
    ]
    with lp.LaneExecutor() as ex:
        b = ex.run_batch(calls)
    assert list(b.errors) == [10] and isinstance(b.errors[10], PathOutsideRoot)
    r = b.results
    assert r[0] == "alpha\nbeta\nalphabet\n"
    assert r[1] == 7 and (tree / "out" / "w.txt").read_text() == "written"
    assert r[2] == ["sub/b.py", "sub/deep/c.py"]
    assert r[3] == ["sub/b.py", "sub/deep/c.py"]
    assert r[4] == ["b.py", "deep/"]
    assert r[5] == [{"path": "a.txt", "line": 2, "text": "beta"}]
    assert r[6] == hashlib.sha256(b"alpha\nbeta\nalphabet\n").hexdigest()
    assert (r[7]["functions"], r[7]["classes"], r[7]["lines"]) == (1, 0, 4)
    assert r[8]["returncode"] == 0 and r[8]["stdout"].startswith("git version")
    assert r[9]["simulated"] is True
    assert b.trace is not None
    by_name = {t.name: t for t in b.trace.tasks}
    for name, task in by_name.items():
        assert task.lane == TOOL_LANES[name], name
    assert by_name["read"].outcome in ("ok", "error")
    parse_phases = [p[0] for p in by_name["parse"].phases]
    assert parse_phases == ["read", "parse", "count"]
    assert {p[0] for p in by_name["grep"].phases} == {"list", "search"}


# -- the demo workload ---------------------------------------------------------------------
def test_demo_calls_deterministic_mixed_and_real() -> None:
    root = default_root()
    assert all((root / f).is_file() for f in STDLIB_FILES)
    calls = demo_calls(root)
    assert len(calls) == 30
    assert [repr(c) for c in calls] == [repr(c) for c in demo_calls(root)]
    assert [repr(c) for c in calls] != [repr(c) for c in demo_calls(root, seed=1)]
    counts: dict[str, int] = {}
    for c in calls:
        counts[c.tool_name] = counts.get(c.tool_name, 0) + 1
    assert counts == {"grep": 6, "read": 9, "parse": 6, "hash": 3, "bash": 3, "generate": 3}
    assert len(demo_calls(root, n=40)) == 40
    with pytest.raises(ValueError):
        demo_calls(root, n=0)


def test_demo_batch_runs_without_errors() -> None:
    with lp.LaneExecutor() as ex:
        b = ex.run_batch(demo_calls(default_root(), n=20, seed=3))
    assert b.errors == {}
    assert len(b.results) == 20


def test_demo_calls_on_another_folder(tree: Path) -> None:
    calls = demo_calls(tree, n=10)
    files = {c.args[0] for c in calls if c.tool_name in ("read", "parse", "hash")}
    assert files and files <= {"sub/b.py", "sub/deep/c.py"}
    with lp.LaneExecutor() as ex:
        b = ex.run_batch([c for c in calls if c.tool_name != "generate"])
    assert b.errors == {}


_scalars = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45), st.floats(), st.booleans(), st.none(),
    st.text(max_size=40),
)  # fmt: skip


@given(
    args=st.lists(_scalars, max_size=3),
    kwargs=st.dictionaries(st.sampled_from(["a", "root", "q"]), _scalars),
)
def test_the_args_summary_of_scalars_is_what_reprlib_shows(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    """``summarize_args`` skips ``reprlib`` for short scalars (most calls' arguments, and a
    seventh of a traced no-op task's cost); the text must be exactly what ``reprlib`` gives."""
    from lanepar.tools.registry import _repr, summarize_args

    def by_reprlib(limit: int) -> str:
        parts = [_repr.repr(a) for a in args]
        parts += [f"{k}={_repr.repr(v)}" for k, v in kwargs.items() if k != "root"]
        text = ", ".join(parts)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    for limit in (24, 40, 200):
        assert summarize_args(tuple(args), kwargs, limit) == by_reprlib(limit)
