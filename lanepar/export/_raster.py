"""Rows of a timeline as pixel columns: what keeps an SVG's size bound to its width.

A picture of 50,000 tasks cannot hold a rectangle per task; each row is rasterised to its pixel
columns instead (the kind with the most time in a column wins), and the queue row to how many
tasks waited per column. Both run on every move of the what-if widget's sliders, so their loops
make no call per segment.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ..trace.model import SEGMENT_KINDS

_KIND = {k: i for i, k in enumerate(SEGMENT_KINDS)}


def rects(
    pieces: Sequence[tuple[str, float, float]], pw: float, k: float
) -> list[tuple[str, float, float]]:
    """A row's segments as (kind, x0, x1) pixel rectangles: wide segments as they are, and the
    ones narrower than a pixel binned per pixel column, where the kind with the most time wins.
    O(segments), with no call per segment: the SVG of a 1,000-task replay is rebuilt on every
    slider move. A row with more segments than pixels is rasterised whole instead, so its size
    follows the pixels."""
    if len(pieces) > pw / 2:
        code = _KIND
        runs = dense([(code[kind], s, e) for kind, s, e in pieces], pw, k)
        return [(SEGMENT_KINDS[c], a, b) for c, a, b in runs]
    wide: list[tuple[str, float, float]] = []
    small: dict[int, dict[str, float]] = {}
    for kind, s, e in pieces:
        a = s * k
        if a < 0.0:
            a = 0.0
        b = e * k
        if b > pw:
            b = pw
        if b <= a:
            continue
        if b - a >= 1.0:
            if wide and wide[-1][0] == kind and abs(wide[-1][2] - a) < 0.01:
                wide[-1] = (kind, wide[-1][1], b)  # contiguous, same colour: one rectangle
            else:
                wide.append((kind, a, b))
            continue
        i = int(a)
        cover = small.get(i)
        if cover is None:
            cover = small[i] = {}
        cover[kind] = cover.get(kind, 0.0) + b - a
    binned = [
        (max(cover, key=cover.__getitem__), float(i), float(i + 1))
        for i, cover in sorted(small.items())
        if sum(cover.values()) >= 0.3
    ]
    return binned + wide


def dense(
    pieces: list[tuple[int, float, float]], pw: float, k: float
) -> list[tuple[int, float, float]]:
    """Per pixel column the kind with the most time (columns less than 30 % covered stay
    empty), merged into runs of one kind."""
    cols = int(pw) + 1
    cover = [[0.0] * len(SEGMENT_KINDS) for _ in range(cols)]
    for kind, s, e in pieces:  # the hot loop of a 50 000-task picture: no calls per segment
        a = s * k
        b = e * k
        if a < 0.0:
            a = 0.0
        if b > pw:
            b = pw
        if b <= a:
            continue
        i = int(a)
        j = int(b)
        if i == j:
            cover[i][kind] += b - a
            continue
        cover[i][kind] += i + 1 - a
        for m in range(i + 1, j if j < cols else cols):
            cover[m][kind] += 1.0
        if j < cols:
            cover[j][kind] += b - j
    runs: list[tuple[int, float, float]] = []
    for i, col in enumerate(cover):
        if sum(col) < 0.3:
            continue
        kind = max(range(len(col)), key=col.__getitem__)
        if runs and runs[-1][0] == kind and runs[-1][2] == i:
            runs[-1] = (kind, runs[-1][1], float(i + 1))
        else:
            runs.append((kind, float(i), float(i + 1)))
    return runs


def queue_depth(waits: Sequence[tuple[float, float]], pw: float, k: float) -> list[float]:
    """How many tasks waited for a slot, averaged over each pixel column: a difference array,
    so a wait across the whole picture costs O(1), not one step per pixel."""
    cols = int(pw) + 1
    diff = [0.0] * (cols + 2)
    for s, e in waits:
        a, b = max(s * k, 0.0), min(e * k, float(cols))
        if b <= a:
            continue
        i, j = int(a), int(b)
        if i == j:
            diff[i] += b - a
            diff[i + 1] -= b - a
            continue
        diff[i] += i + 1 - a
        diff[i + 1] += a - i
        diff[j] += b - j - 1
        diff[j + 1] -= b - j
    # the running sum from 0.0, as a loop would add it, without a Python step per column
    return list(itertools.accumulate(diff[:cols], initial=0.0))[1:]
