"""Auto mode: decide per batch whether parallelism can pay.

This is the seed framework's rule (fewer than 3 tools, or only instant directory ops, run
sequentially); ``lanepar.policy`` grows it into a learned decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

FAST_OPS = frozenset({"glob", "ls", "list_files"})


@dataclasses.dataclass(frozen=True)
class Decision:
    """What auto mode chose for a batch, and why (recorded in the trace, shown in the dashboard)."""

    mode: str  # "sequential" | "parallel"
    reason: str
    routes: dict[int, str] = dataclasses.field(default_factory=dict)  # call index -> lane

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "routes": dict(self.routes)}


def seed_rule(names: Sequence[str]) -> Decision:
    if len(names) < 3:
        return Decision("sequential", f"{len(names)} tool(s): fewer than 3 cannot repay dispatch")
    if all(n in FAST_OPS for n in names):
        return Decision("sequential", "only instant directory ops (glob/ls/list_files)")
    return Decision("parallel", f"{len(names)} tools, not all instant")
