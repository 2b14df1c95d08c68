"""Sinks: where change events go besides the graph-changes queue (SINKS)."""
