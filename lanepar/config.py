"""Lane configuration and the default lanes.

Validation lives here, at construction, because a bad limit discovered while a batch is running
would lose work: every error names the field and the value that broke it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from typing import Literal

from ._exceptions import LaneConfigError

LaneKind = Literal["async", "thread", "process", "dask"]
KINDS: tuple[str, ...] = ("async", "thread", "process", "dask")

#: The most slots a lane may have. Workers are made as work arrives, so a high limit costs
#: nothing idle, but each running slot is a task (and a thread or process on those lanes).
MAX_CONCURRENCY = 4096
#: The most retries one call may make.
MAX_RETRIES = 100

#: Upper bound of an adaptive (``max_concurrency="auto"``) lane when no ceiling is given.
DEFAULT_AUTO_CEILING = 64

Concurrency = int | Literal["auto"]


@dataclasses.dataclass(frozen=True)
class LaneConfig:
    """How one lane runs its tasks.

    ``priority``: lower numbers win when lanes compete for a shared ``max_total`` budget (0 is the
    control lane). ``max_concurrency`` is honoured exactly — never clamped — because agent
    frameworks silently turned a user's 10 into 4 and nobody could see why a batch was slow.
    ``max_concurrency="auto"`` makes the limit adaptive between ``min_concurrency`` and ``ceiling``.
    ``address`` and ``pack_ms`` apply to Dask lanes: the scheduler to use (None: start a local
    cluster), and how many ms of expected work short jobs may share one Dask task (None: 250,
    see ``backends/_dask_pack.py``; 0: every job its own Dask task). A job's value
    then arrives with its Dask task's; jobs with a deadline always go alone.
    """

    min_concurrency: int = 1
    max_concurrency: Concurrency = 4
    kind: LaneKind = "async"
    priority: int = 1
    timeout_s: float | None = None
    retries: int = 0
    retry_backoff_s: float = 0.05
    ceiling: int | None = None
    address: str | None = None
    pack_ms: float | None = None

    def __post_init__(self) -> None:
        _check_int("min_concurrency", self.min_concurrency, low=0)
        if self.max_concurrency != "auto":
            _check_int("max_concurrency", self.max_concurrency, low=1, high=MAX_CONCURRENCY)
            if self.min_concurrency > self.max_concurrency:
                raise LaneConfigError(
                    f"LaneConfig: min_concurrency={self.min_concurrency} is greater than "
                    f"max_concurrency={self.max_concurrency}"
                )
        if self.ceiling is not None:
            _check_int("ceiling", self.ceiling, low=max(1, self.min_concurrency),
                       high=MAX_CONCURRENCY)  # fmt: skip
        if self.kind not in KINDS:
            raise LaneConfigError(
                f"LaneConfig: kind={self.kind!r} is not one of {', '.join(KINDS)}"
            )
        if self.address is not None and self.kind != "dask":
            raise LaneConfigError(
                f"LaneConfig: address={self.address!r} only applies to kind='dask'"
            )
        if self.pack_ms is not None:
            if self.kind != "dask":
                raise LaneConfigError(
                    f"LaneConfig: pack_ms={self.pack_ms!r} only applies to kind='dask'"
                )
            if not (_is_real(self.pack_ms) and 0 <= self.pack_ms < math.inf):
                raise LaneConfigError(
                    f"LaneConfig: pack_ms={self.pack_ms!r} must be a number of ms >= 0"
                )
        _check_int("priority", self.priority, low=-(2**31))
        _check_int("retries", self.retries, low=0, high=MAX_RETRIES)
        if self.timeout_s is not None and not (
            _is_real(self.timeout_s) and 0 < self.timeout_s < math.inf
        ):
            raise LaneConfigError(
                f"LaneConfig: timeout_s={self.timeout_s!r} must be a positive number"
            )
        if not (
            isinstance(self.retry_backoff_s, (int, float)) and 0 <= self.retry_backoff_s <= 3600
        ):
            raise LaneConfigError(
                f"LaneConfig: retry_backoff_s={self.retry_backoff_s!r} must be a number of "
                "seconds in [0, 3600]"
            )

    @property
    def adaptive(self) -> bool:
        return self.max_concurrency == "auto"

    @property
    def limit_ceiling(self) -> int:
        """The highest limit this lane may ever run at (its fixed limit, or the auto ceiling)."""
        if isinstance(self.max_concurrency, int):
            return self.max_concurrency
        return self.ceiling if self.ceiling is not None else DEFAULT_AUTO_CEILING

    @property
    def initial_limit(self) -> int:
        """The limit a lane starts at: adaptive lanes start low (4, as a small connection pool
        would) and probe upwards; starting at 1 wastes the first windows on a ramp."""
        if isinstance(self.max_concurrency, int):
            return self.max_concurrency
        return min(self.limit_ceiling, max(1, self.min_concurrency, 4))

    def replace(self, **changes: object) -> LaneConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _is_real(value: object) -> bool:
    """An int or a float, never a bool (``True`` is an ``int`` to Python, not a setting)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(field: str, value: object, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LaneConfigError(f"LaneConfig: {field}={value!r} must be an integer")
    if high is not None and value > high:
        raise LaneConfigError(f"LaneConfig: {field}={value} must be <= {high}")
    if value < low:
        raise LaneConfigError(f"LaneConfig: {field}={value} must be >= {low}")


#: The four lanes agent frameworks commonly use, kept because prompts and users think in them.
#: Read-only: pass a new mapping to ``LaneExecutor(lanes=...)`` instead of editing this one.
DEFAULT_LANES: Mapping[str, LaneConfig] = types.MappingProxyType(
    {
        "control": LaneConfig(min_concurrency=1, max_concurrency=4, priority=0),
        "query": LaneConfig(min_concurrency=2, max_concurrency=16, priority=1),
        "execute": LaneConfig(min_concurrency=1, max_concurrency=4, priority=2, kind="thread"),
        "generate": LaneConfig(min_concurrency=1, max_concurrency=2, priority=3),
    }
)

#: Tool name → lane. Anything unlisted goes to ``execute``.
TOOL_LANES: Mapping[str, str] = {
    "read": "query",
    "glob": "query",
    "ls": "query",
    "grep": "query",
    "list_files": "query",
    "search": "query",
    "hash": "query",
    "bash": "execute",
    "write": "execute",
    "edit": "execute",
    "execute": "execute",
    "parse": "execute",
    "generate": "generate",
}
DEFAULT_LANE = "execute"


def check_options(
    *, sample_hz: float, resolution_ms: float, max_segments: int, max_tasks: int
) -> None:
    """An executor's tracing options, each checked against its range with its name."""
    for field, value, lo, hi in (
        ("sample_hz", sample_hz, 0.0, 1000.0),
        ("resolution_ms", resolution_ms, 0.0, 1000.0),
    ):
        if not (_is_real(value) and lo <= value <= hi):
            raise LaneConfigError(
                f"LaneExecutor: {field}={value!r} must be a number in [{lo}, {hi}]"
            )
    _check_int("max_segments", max_segments, low=2, high=4096)
    _check_int("max_tasks", max_tasks, low=1)


def validate_lanes(lanes: Mapping[str, LaneConfig], max_total: int | None) -> dict[str, LaneConfig]:
    """Check a whole lane table; reserved slots must fit inside a shared budget."""
    if not lanes:
        raise LaneConfigError("lanes: at least one lane is needed")
    out: dict[str, LaneConfig] = {}
    for name, cfg in lanes.items():
        if not isinstance(name, str) or not name:
            raise LaneConfigError(f"lanes: lane name {name!r} must be a non-empty string")
        if not isinstance(cfg, LaneConfig):
            raise LaneConfigError(
                f"lanes[{name!r}]: expected a LaneConfig, got {type(cfg).__name__}"
            )
        out[name] = cfg
    if max_total is not None:
        _check_int("max_total", max_total, low=1)
        reserved = sum(c.min_concurrency for c in out.values())
        if reserved > max_total:
            raise LaneConfigError(
                f"max_total={max_total} is smaller than the reserved slots of all lanes "
                f"(sum of min_concurrency = {reserved})"
            )
    return out


def parse_lane_values(spec: str) -> dict[str, list[int]]:
    """Parse ``"query=1,2,4 execute=3"`` into ``{"query": [1, 2, 4], "execute": [3]}``.

    The one parser for ``lane=N[,N…]`` (CLI, magics, sweeps, what-ifs): commas and spaces both
    separate, and a bare number belongs to the lane named before it. Every error names the part
    that broke it.
    """
    values: dict[str, list[int]] = {}
    lane: str | None = None
    for part in spec.replace(",", " ").split():
        name, sep, value = part.partition("=")
        if sep:
            lane = name.strip()
            if not lane:
                raise LaneConfigError(f"lane limit {part!r} is not of the form lane=N")
            if lane in values:
                raise LaneConfigError(f"lane {lane!r} is given twice in {spec!r}")
            values[lane] = []
        elif lane is None:
            raise LaneConfigError(f"lane limit {part!r} is not of the form lane=N")
        else:
            value = part
        try:
            n = int(value)
        except ValueError:
            raise LaneConfigError(f"lane {lane!r}: {value!r} is not an integer") from None
        if n < 1:
            raise LaneConfigError(f"lane {lane!r}: limit {n} must be >= 1")
        values[lane].append(n)
    return values


def parse_lane_limits(spec: str) -> dict[str, int]:
    """Parse ``"query=16,execute=4"`` (one limit per lane) into a mapping."""
    limits: dict[str, int] = {}
    for lane, ns in parse_lane_values(spec).items():
        if len(ns) != 1:
            raise LaneConfigError(f"lane {lane!r}: one limit expected, got {ns}")
        limits[lane] = ns[0]
    return limits
