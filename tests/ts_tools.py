"""Run the front end's TypeScript under Node from the Python tests.

``jlpm build:test`` (esbuild) bundles the real decoder, store and readers from ``extension/src``
into ``extension/test-build``; the tests then feed them what the Python side really produced.
Skips when node or ``extension/node_modules`` is missing (run ``jlpm install`` in extension/).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

EXT = Path(__file__).resolve().parent.parent / "extension"
BUILD = EXT / "test-build"


def build_ts_tests() -> Path:
    """Bundle the node entry points once per session (about a second); returns test-build/."""
    if shutil.which("node") is None or not (EXT / "node_modules" / "esbuild").is_dir():
        pytest.skip("node or extension/node_modules missing (run `jlpm install` in extension/)")
    if not getattr(build_ts_tests, "done", False):
        jlpm = shutil.which("jlpm")
        cmd = [jlpm, "build:test"] if jlpm else ["npm", "run", "build:test"]
        subprocess.run(cmd, cwd=EXT, check=True, timeout=180, capture_output=True)
        build_ts_tests.done = True  # type: ignore[attr-defined]
    return BUILD


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def node_decode(
    tmp: Path,
    messages: Sequence[tuple[dict[str, Any], Sequence[bytes]]],
    *,
    records: Sequence[bytes] = (),
    origin: int = 0,
) -> dict[str, Any]:
    """Feed kernel messages (and single packed records) to the widget's decoder under Node;
    returns its view of them (see ``extension/test/decode-cli.ts``)."""
    build = build_ts_tests()
    doc = {
        "messages": [[m, [b64(b) for b in bufs]] for m, bufs in messages],
        "records": {"origin": str(origin), "packed": [b64(r) for r in records]},
    }
    path = tmp / "decode-input.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run(
        ["node", str(build / "decode-cli.js"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result
