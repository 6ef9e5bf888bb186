"""lanepar.jupyter."""
