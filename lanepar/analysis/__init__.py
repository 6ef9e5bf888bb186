"""lanepar.analysis."""
