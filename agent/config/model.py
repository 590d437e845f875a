"""Typed config structs: the root document and the bases every component config extends.

Every default lives here or in a component's config struct, never in a
factory. Component configs are msgspec structs tagged by their ``type:``
name, with unknown keys rejected.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

import msgspec

from agent.config.units import ByteSize, Duration


class ApiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The HTTP API and /metrics listener.

    ``auth_token`` guards /api/v1/* (components, tap, reload): with a token set, they want
    ``Authorization: Bearer <token>``; without one they answer only on a loopback address.
    """

    enabled: bool = True
    address: str = "127.0.0.1:2020"
    auth_token: str | None = None

    def is_loopback(self) -> bool:
        """Whether ``address`` only accepts connections from this host."""
        host = self.address.rpartition(":")[0].strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name, or "" for every interface
            return False


class BufferConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The bounded buffer in front of a transform or sink."""

    type: Literal["memory"] = "memory"
    max_events: int = 50_000
    max_bytes: ByteSize = ByteSize(8 * 1024 * 1024)  # of events as they sit in memory (see agent.core.footprint)
    when_full: Literal["block", "drop_newest"] = "block"


class RootConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The top level of a pipeline file; components are checked one by one against their type."""

    data_dir: str = "/var/lib/agent"
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    shutdown_timeout: Duration = Duration(30.0)
    memory_limit: ByteSize | None = None  # sources pause before buffered events take the process past it
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sources: dict[str, dict] = msgspec.field(default_factory=dict)
    transforms: dict[str, dict] = msgspec.field(default_factory=dict)
    sinks: dict[str, dict] = msgspec.field(default_factory=dict)


class SourceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every source config."""

    def output_type(self) -> str:
        """``logs`` or ``metrics``: what this source emits."""
        return "logs"


class TransformConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every transform config; a transform emits the data type it takes unless it says otherwise."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    inputs: list[str]
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)

    def output_type(self, input_type: str) -> str:
        """``logs`` or ``metrics``: what this transform emits when fed ``input_type``."""
        return input_type


class SinkConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every sink config."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    inputs: list[str]
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)
