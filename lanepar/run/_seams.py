"""The seams through which policies plug into the run loop without the run loop importing them.

``run/`` schedules; ``policy/`` decides. Auto mode is a :class:`BatchPolicy` the executor calls
for ``mode="auto"`` batches, and adaptive limits are observers (``trace.hooks``) that move a
lane's limit through the executor's public API. The default factories are registered by
``lanepar.policy`` when it is imported (``import lanepar`` does), so the dependency arrow points
from policy to run, never back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import LaneConfig

if TYPE_CHECKING:
    from ..tools.registry import Resolved
    from .executor import LaneExecutor
    from .lane import Lane


@dataclasses.dataclass(frozen=True)
class Decision:
    """What auto mode chose for a batch, and why (recorded in the trace, shown in the dashboard)."""

    mode: str  # "sequential" | "parallel"
    reason: str
    routes: dict[int, str] = dataclasses.field(default_factory=dict)  # call index -> lane

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "routes": dict(self.routes)}


class BatchPolicy(Protocol):
    """Chooses how one ``mode="auto"`` batch runs. Called on the executor's loop thread before
    anything is queued; it may add lanes through ``executor.add_lane`` (a process lane for
    CPU-heavy calls) and learns through the observer hooks it defines."""

    def decide_batch(self, executor: LaneExecutor, calls: list[Resolved]) -> Decision: ...


class LaneView:
    """A read-only window on one lane: what users and policies may look at, never its queue or
    workers. Reads are live (the current limit, active and pending counts)."""

    __slots__ = ("_lane",)

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    @property
    def name(self) -> str:
        return self._lane.name

    @property
    def config(self) -> LaneConfig:
        return self._lane.config

    @property
    def kind(self) -> str:
        return self._lane.config.kind

    @property
    def limit(self) -> int:
        return self._lane.limit

    @property
    def active(self) -> int:
        return self._lane.active

    @property
    def pending(self) -> int:
        return self._lane.queue.n

    @property
    def peak_active(self) -> int:
        return self._lane.peak_active

    def __repr__(self) -> str:
        return (
            f"<lane {self.name!r} kind={self.kind} limit={self.limit} active={self.active} "
            f"pending={self.pending}>"
        )


#: ``factory()`` -> the BatchPolicy an executor uses for ``mode="auto"`` when none was given.
AutoFactory = Callable[[], BatchPolicy]
#: ``attach(executor, lane_name)`` -> an observer that moves that lane's limit.
AdaptiveFactory = Callable[["LaneExecutor", str], Any]

_auto_factory: AutoFactory | None = None
_adaptive_factory: AdaptiveFactory | None = None


def register_policies(*, auto: AutoFactory, adaptive: AdaptiveFactory) -> None:
    """Install the default auto-mode policy and adaptive-limit observer (``lanepar.policy``)."""
    global _auto_factory, _adaptive_factory
    _auto_factory, _adaptive_factory = auto, adaptive


def default_auto_policy() -> BatchPolicy:
    if _auto_factory is None:
        raise RuntimeError("mode='auto' needs a BatchPolicy: import lanepar.policy or pass one")
    return _auto_factory()


def adaptive_observer(executor: LaneExecutor, lane: str) -> Any:
    if _adaptive_factory is None:
        raise RuntimeError(
            f"lane {lane!r} has max_concurrency='auto', which needs lanepar.policy imported"
        )
    return _adaptive_factory(executor, lane)


def lane_table(lanes: dict[str, Lane]) -> dict[str, dict[str, Any]]:
    """Each lane's configuration and live limit, as traces and reports store it."""
    return {
        n: {
            "kind": ln.config.kind,
            "priority": ln.config.priority,
            "min_concurrency": ln.config.min_concurrency,
            "max_concurrency": ln.limit,
            "adaptive": ln.config.adaptive,
        }
        for n, ln in lanes.items()
    }
