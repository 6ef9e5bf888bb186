"""ToolCall → LaneExecutor → Lane: the scheduling room (see DESIGN.md)."""
