"""Bounded buffers that sit on every edge of the topology."""
