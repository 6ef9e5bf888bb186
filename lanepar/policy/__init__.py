"""lanepar.policy."""
