"""lanepar.tools."""
