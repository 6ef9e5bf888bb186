"""lanepar.trace."""
