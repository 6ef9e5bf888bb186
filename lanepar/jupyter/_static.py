"""The front end's build outputs, as the widget and the snapshot page need them.

``extension/`` (TypeScript) builds them into ``static/`` next to this module (``jlpm build:prod``,
which the wheel build hook runs): ``widget.js`` (the anywidget ESM), ``snapshot.js`` (the same
view as a classic script defining the global ``laneparSnapshot``) and ``dashboard.css``. They are
not in git: a checkout has them once ``extension/`` was built, a wheel always.
"""

from __future__ import annotations

import pathlib

STATIC = pathlib.Path(__file__).parent / "static"


def read_static(name: str) -> str:
    try:
        return (STATIC / name).read_text("utf-8")
    except FileNotFoundError:
        raise RuntimeError(
            f"lanepar's dashboard front end is not built ({STATIC / name} is missing): run "
            "`jlpm install && jlpm build:prod` in extension/, or `pip install -e .` (needs node)"
        ) from None


class Bundle:
    """A build output read when a widget is created, not at import: ``import lanepar`` must work
    without the build (headless use), and anywidget sends whatever ``str()`` of it gives."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return read_static(self.name)
