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
    """Serve the HTTP API (/health, /ready, /metrics, /api/v1/*); false turns it off."""
    address: str = "127.0.0.1:2020"
    """host:port the API listens on; 0.0.0.0:2020 for every interface (then set auth_token)."""
    auth_token: str | None = None
    """Bearer token /api/v1/* (components, tap, reload) requires; without one they answer only on a loopback address.
    Give it from a secret: ${file:/etc/agent/api-token}.
    """

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
    """Where waiting events are kept: memory (the only kind for now)."""
    max_events: int = 50_000
    """Events the buffer holds at most."""
    max_bytes: ByteSize = ByteSize(8 * 1024 * 1024)  # of events as they sit in memory (see agent.core.footprint)
    """Bytes the buffer holds at most, counted as the events take in memory (a parsed line about 3.8 times its length).
    """
    when_full: Literal["block", "drop_newest"] = "block"
    """block: the sender waits, which pushes back to the sources; drop_newest: new events are dropped and counted."""


class RootConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The top level of a pipeline file; components are checked one by one against their type."""

    data_dir: str = "/var/lib/agent"
    """Directory for checkpoints and other state; locked, so one agent per directory."""
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    """The HTTP API and /metrics listener."""
    shutdown_timeout: Duration = Duration(30.0)
    """How long SIGTERM may take to drain the pipeline; what is still stuck then is read again after a restart."""
    memory_limit: ByteSize | None = None
    """Pause every source while the events buffered across the pipeline would take the process past this; none by
    default. About 80 % of a container's memory limit.
    """
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level of the agent's own log lines (JSON on stderr)."""
    sources: dict[str, dict] = msgspec.field(default_factory=dict)
    """Sources by id: each a mapping with its type and options."""
    transforms: dict[str, dict] = msgspec.field(default_factory=dict)
    """Transforms by id: each a mapping with its type, inputs and options."""
    sinks: dict[str, dict] = msgspec.field(default_factory=dict)
    """Sinks by id: each a mapping with its type, inputs and options."""


class SourceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every source config."""

    def output_type(self) -> str:
        """``logs`` or ``metrics``: what this source emits."""
        return "logs"


class TransformConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every transform config; a transform emits the data type it takes unless it says otherwise."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    inputs: list[str]
    """Ids of the sources and transforms this one reads from (a route's outputs as id.route)."""
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)
    """The bounded buffer in front of this transform."""

    def output_type(self, input_type: str) -> str:
        """``logs`` or ``metrics``: what this transform emits when fed ``input_type``."""
        return input_type


class SinkConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    """Base of every sink config."""

    input_types: ClassVar[frozenset[str]] = frozenset({"logs"})
    inputs: list[str]
    """Ids of the sources and transforms this sink reads from (a route's outputs as id.route)."""
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)
    """The bounded buffer in front of this sink."""
