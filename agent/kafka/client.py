"""Client settings shared by the Kafka sink and source: bootstrap servers, SASL and TLS, mapped to aiokafka.

A component's config declares ``bootstrap_servers``, ``client_id``, ``sasl`` and ``tls`` (msgspec structs cannot
share fields through a mixin); :func:`client_options` turns them into the keyword arguments aiokafka's producer,
consumer and admin client take. TLS is on when ``tls`` is given; SASL when ``sasl`` is: the security protocol
follows (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from agent.delivery.config import TlsConfig
from agent.delivery.http import ssl_context


class SaslConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """SASL credentials: ``mechanism`` PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with ``username`` and ``password``."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""
    username: str
    """User name."""
    password: str
    """Password (use ${VAR} or ${file:PATH}; it never appears in logs)."""

    def __post_init__(self) -> None:
        for key in ("username", "password"):  # an unset ${VAR} renders empty: the brokers would refuse it forever
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty (is the variable or file that sets it empty?)")

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"SaslConfig(mechanism={self.mechanism!r}, username={self.username!r}, password=<redacted>)"


class KafkaConnection(Protocol):
    """The connection fields a Kafka component's config declares."""

    bootstrap_servers: list[str]
    client_id: str | None
    sasl: SaslConfig | None
    tls: TlsConfig | None


def check_servers(servers: list[str]) -> None:
    """ValueError unless ``servers`` holds at least one ``host:port``, each without a scheme, the port 1-65535."""
    if not servers:
        raise ValueError("bootstrap_servers must name at least one host:port")
    for server in servers:
        if "://" in server:
            raise ValueError(f"bootstrap_servers: {server!r} has a scheme: give host:port (TLS is set by tls)")
        host, _, port = server.rpartition(":")
        if not host or "/" in host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"bootstrap_servers: {server!r} is not host:port")
        if not 0 < int(port) < 65536:
            raise ValueError(f"bootstrap_servers: {server!r}: the port must be 1-65535")


def security_protocol(config: KafkaConnection) -> str:
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, from which of ``sasl`` and ``tls`` are set."""
    if config.sasl is not None:
        return "SASL_SSL" if config.tls is not None else "SASL_PLAINTEXT"
    return "SSL" if config.tls is not None else "PLAINTEXT"


def client_options(config: KafkaConnection) -> dict[str, Any]:
    """aiokafka keyword arguments for the connection (a TLS file that cannot be loaded is a BuildError)."""
    options: dict[str, Any] = {"bootstrap_servers": list(config.bootstrap_servers),
                               "security_protocol": security_protocol(config)}
    if config.client_id:
        options["client_id"] = config.client_id
    if config.tls is not None:
        options["ssl_context"] = ssl_context(config.tls)
    if config.sasl is not None:
        options["sasl_mechanism"] = config.sasl.mechanism
        options["sasl_plain_username"] = config.sasl.username
        options["sasl_plain_password"] = config.sasl.password
    return options
