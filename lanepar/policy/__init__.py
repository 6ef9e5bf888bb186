"""Policies that plug into the run loop's seams: auto mode and adaptive limits.

Importing this package registers them as the executor's defaults (``lanepar`` imports it), so
``lanepar.run`` never imports ``lanepar.policy``.
"""

from ..run._seams import register_policies
from .auto import AutoPolicy
from .autotune import AdaptiveObserver

register_policies(auto=AutoPolicy, adaptive=AdaptiveObserver)
