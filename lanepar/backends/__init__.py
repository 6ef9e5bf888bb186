"""lanepar.backends."""
