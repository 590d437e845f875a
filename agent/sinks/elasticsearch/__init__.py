"""Sink `elasticsearch`: see :mod:`agent.sinks.elasticsearch.sink`."""

from agent.sinks.elasticsearch.sink import ElasticsearchConfig, ElasticsearchSink

__all__ = ["ElasticsearchConfig", "ElasticsearchSink"]
