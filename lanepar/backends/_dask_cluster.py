"""The cluster a Dask lane starts for itself when it is given no ``address``.

Two of its settings are not Dask's defaults, because this cluster shares the machine's cores
with the bodies it runs, and it has no dashboard:

- the cluster has no dashboard (a second one on the default port would warn), so nobody reads
  the workers' statistical profiles. Taking them costs each worker a stack walk every 10 ms,
  holding the GIL its pure-Python bodies need, and every heartbeat carries them to the
  scheduler, which runs in this process: two to four points of a CPU batch's efficiency on two
  cores (``benchmarks/dask_lane.py``);
- every server of the cluster (scheduler, nannies, workers) wakes its event loop every 20 ms
  only to measure how late the wake-up came (``distributed.admin.tick``: a warning when a loop
  was blocked for 3 s, and a metric for the dashboard). Every 500 ms, as Dask's own test
  clusters do, still catches a 3 s stall; an idle cluster then costs half the CPU it did
  (1.2 s of CPU every 10 s here, now 0.55 s).

It keeps Dask's root-task queue as it is (``worker-saturation`` 1.1: two tasks on a worker of one
thread, the next handed out as one ends), the same depth as the lane keeps (two per worker
thread). A lane that sends more than that at once, up to a whole batch, then has the rest handed
out as workers free up, so a worker that the machine slows during that batch gets less of it.
Until the sixteenth stop this cluster sent every task to a worker at once (``inf``). With packs
of 250 ms, the 200 × 20 ms CPU batch sent at once read 82–88 % efficiency that way, and 88–90 %
with the queue (BENCHMARKS.md, "Dask lane").
"""

from __future__ import annotations

import importlib
from typing import Any

#: What a lane without ``address`` starts. ``dashboard_address=None`` because a second cluster
#: on the default port would warn (and tests turn warnings into errors).
DEFAULT_CLUSTER_KWARGS: dict[str, Any] = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
}
#: Dask settings of a lane's own cluster (see the module docstring); the nannies hand them to
#: their workers, so they hold in every worker process.
LOCAL_SCHEDULER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
}


def distributed_module() -> Any:
    """``distributed``, imported on first use (it is heavy) and typed loosely (partly untyped)."""
    return importlib.import_module("distributed")


def start_local_cluster(kwargs: dict[str, Any]) -> Any:
    """A ``LocalCluster`` with the lane's settings (blocking: call it from a helper thread)."""
    distributed = distributed_module()  # first: it registers the config keys set here
    with importlib.import_module("dask").config.set(LOCAL_SCHEDULER_CONFIG):
        return distributed.LocalCluster(**kwargs)
