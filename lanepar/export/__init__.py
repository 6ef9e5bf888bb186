"""lanepar.export."""
