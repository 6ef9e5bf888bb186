"""The colours and names of segment kinds and outcomes, read from ``palette.json``.

One file serves the HTML report, the Jupyter code and the TypeScript front end (which imports the
same JSON at build time), so a colour changed there changes everywhere and nowhere else.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from .model import OUTCOMES, SEGMENT_KINDS


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        pathlib.Path(__file__).with_name("palette.json").read_text("utf-8")
    )
    if tuple(data["segments"]) != SEGMENT_KINDS or tuple(data["outcomes"]) != OUTCOMES:
        # the TypeScript side draws kinds by code, in layout order: a mismatch would mislabel bars
        raise ValueError("palette.json: segment kinds or outcomes differ from trace/layout.json")
    return data


PALETTE: dict[str, Any] = _load()
#: segment kind -> CSS colour, in ``SEGMENT_KINDS`` order.
COLOURS: dict[str, str] = {k: v["colour"] for k, v in PALETTE["segments"].items()}
#: segment kind -> what a legend calls it ("I/O wait", "GIL / lock wait", ...).
LABELS: dict[str, str] = {k: v["label"] for k, v in PALETTE["segments"].items()}
OUTCOME_COLOURS: dict[str, str] = {k: v["colour"] for k, v in PALETTE["outcomes"].items()}
