"""Source `tail`: see :mod:`agent.sources.tail.source`."""

from agent.sources.tail.source import TailConfig, TailSource

__all__ = ["TailConfig", "TailSource"]
