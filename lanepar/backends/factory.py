"""Which backend runs a lane of a given kind (the Dask one imported only when it is used)."""

from __future__ import annotations

from ..config import LaneConfig
from .base import Backend, BackendContext


def make_backend(ctx: BackendContext, cfg: LaneConfig) -> Backend:
    """The backend for a lane of ``cfg.kind`` (Dask imported only when a Dask lane exists)."""
    if cfg.kind == "process":
        from .process import ProcessBackend

        return ProcessBackend(ctx)
    if cfg.kind == "dask":
        from .dask import DaskBackend

        return DaskBackend(ctx, cfg)
    from .local import LocalBackend

    return LocalBackend(ctx)
