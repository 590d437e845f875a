"""A Kafka broker's security layer in front of a real broker (tansu), for the tests: TLS termination, SASL (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512) against a user table, and a log of the requests clients sent.

tansu cannot authenticate here (its SCRAM users cannot be created, its TLS options refuse a self-signed pair), so
:class:`KafkaFront` listens on loopback and does what a Kafka broker's SASL listener does before it lets requests
through (the Kafka protocol guide: SaslHandshake 17 v0/v1, SaslAuthenticate 36 v0-v2, ApiVersions 18):

- before authentication only ApiVersions (before the handshake), SaslHandshake and SaslAuthenticate are answered;
  any other request closes the connection, as Kafka does;
- a handshake v0 is followed by raw SASL tokens (a 4-byte length, no Kafka header), a v1 by SaslAuthenticate;
- refused credentials answer SASL_AUTHENTICATION_FAILED (58) with a message, then the connection is closed;
- once authenticated, every request is relayed to tansu over the connection's own upstream connection and the
  answers relayed back (ApiVersions answers patched to advertise 17 and 36 as the front speaks them).

tansu is started advertising the front's port (``--advertised-listener-url``), so Metadata and FindCoordinator
already name the front: nothing is rewritten. Without ``users`` the front only terminates TLS (if given) and logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import ssl
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers.kafka import Tansu

from agent.bench.peers.handles import PeerError

HOST = "127.0.0.1"
SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MAX_FRAME = 100 << 20  # Kafka's socket.request.max.bytes
# the first flexible version (request header v2, compact fields) of the APIs a client of the agent sends
FLEXIBLE_FROM = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5, 16: 3, 18: 3,
                 19: 5, 20: 4, 21: 2, 22: 2, 24: 3, 25: 3, 26: 3, 28: 3, 29: 2, 30: 2, 32: 4, 36: 2, 37: 2, 42: 2}


@dataclass(frozen=True)
class LoggedRequest:
    """One request as a client sent it: its API, version and body (the bytes after the request header)."""

    api_key: int
    api_version: int
    body: bytes
    user: str | None  # the authenticated user, None before authentication (or without SASL)


class AuthFailed(Exception):
    """Credentials the front refuses; the message is what the client is told."""


class Reader:
    """Kafka primitive types read from a buffer (classic and compact forms)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("truncated")
        out, self.at = self.data[self.at:self.at + n], self.at + n
        return out

    def int16(self) -> int:
        value: int = struct.unpack(">h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def uvarint(self) -> int:
        value = shift = 0
        for _ in range(5):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ValueError("varint too long")

    def string(self, compact: bool = False) -> str | None:
        size = self.uvarint() - 1 if compact else self.int16()
        return None if size < 0 else self.take(size).decode()

    def bytes_(self, compact: bool = False) -> bytes:
        size = self.uvarint() - 1 if compact else self.int32()
        return self.take(max(size, 0))

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def flexible(api_key: int, api_version: int) -> bool:
    return api_version >= FLEXIBLE_FROM.get(api_key, 1 << 15)


def join_group_instance_id(request: LoggedRequest) -> str | None:
    """The ``group_instance_id`` a JoinGroup request (API key 11) carries: None before v5 or when unset."""
    assert request.api_key == 11
    if request.api_version < 5:
        return None
    compact = flexible(11, request.api_version)
    body = Reader(request.body)
    body.string(compact)  # group_id
    body.take(8)  # session_timeout_ms, rebalance_timeout_ms
    body.string(compact)  # member_id
    return body.string(compact)


class _Scram:
    """The server side of one SCRAM exchange (RFC 5802, RFC 7677) against stored keys, not passwords."""

    def __init__(self, mechanism: str, credentials: Mapping[str, tuple[bytes, int, bytes, bytes]]) -> None:
        self.mechanism, self.hash = mechanism, SCRAM_HASHES[mechanism]
        self.credentials = credentials
        self.user: str | None = None
        self.expect = self._client_first

    def step(self, token: bytes) -> tuple[bytes, bool]:
        """The answer to the client's ``token`` and whether the exchange is complete; AuthFailed if refused."""
        return self.expect(token.decode(errors="replace"))

    def _client_first(self, message: str) -> tuple[bytes, bool]:
        gs2, _, bare = message.partition(",")
        authzid, _, bare = bare.partition(",")
        if gs2 != "n" or (authzid and not authzid.startswith("a=")):
            raise AuthFailed("Authentication failed: invalid SCRAM client first message (channel binding "
                             "is not supported)")
        fields = dict(part.split("=", 1) for part in bare.split(",") if "=" in part)
        user = fields.get("n", "").replace("=2C", ",").replace("=3D", "=")
        if user not in self.credentials or not fields.get("r") or authzid not in ("", f"a={user}"):
            raise AuthFailed("Authentication failed: Invalid user credentials")
        salt, iterations, self.stored_key, self.server_key = self.credentials[user]
        self.user, self.gs2_header = user, f"{gs2},{authzid},"
        self.nonce = fields["r"] + secrets.token_urlsafe(18)
        self.server_first = f"r={self.nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        self.client_first_bare = bare
        self.expect = self._client_final
        return self.server_first.encode(), False

    def _client_final(self, message: str) -> tuple[bytes, bool]:
        without_proof, _, proof = message.rpartition(",p=")
        fields = dict(part.split("=", 1) for part in without_proof.split(",") if "=" in part)
        if fields.get("c") != base64.b64encode(self.gs2_header.encode()).decode() or fields.get("r") != self.nonce:
            raise AuthFailed("Authentication failed: invalid SCRAM client final message")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(self.stored_key, auth_message, self.hash)
        try:
            client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof, validate=True), signature, strict=True))
        except ValueError:
            client_key = b""
        if not hmac.compare_digest(hashlib.new(self.hash, client_key).digest(), self.stored_key):
            raise AuthFailed("Authentication failed during authentication due to invalid credentials with SASL "
                             f"mechanism {self.mechanism}")
        server_signature = hmac.digest(self.server_key, auth_message, self.hash)
        return b"v=" + base64.b64encode(server_signature), True


class _Plain:
    """SASL PLAIN (RFC 4616): one message, ``authzid NUL authcid NUL passwd``."""

    mechanism = "PLAIN"

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = users
        self.user: str | None = None

    def step(self, token: bytes) -> tuple[bytes, bool]:
        parts = token.decode(errors="replace").split("\0")
        if len(parts) != 3:
            raise AuthFailed("Authentication failed: Invalid SASL/PLAIN response: expected 3 tokens")
        authzid, user, password = parts
        if authzid and authzid != user:
            raise AuthFailed("Authentication failed: Client requested an authorization id that is different "
                             "from username")
        if user not in self.users or not hmac.compare_digest(self.users[user].encode(), password.encode()):
            raise AuthFailed("Authentication failed: Invalid username or password")
        self.user = user
        return b"", True


class KafkaFront:
    """A TLS and SASL front for the broker on ``upstream_port`` (see the module docstring); :meth:`stop` ends it.

    ``users`` (name -> password) turns SASL on with ``mechanisms``; ``tls`` is the server context; ``handshake_max``
    and ``authenticate_max`` the SaslHandshake and SaslAuthenticate versions it advertises. ``requests`` logs
    every request, ``logins`` each (user, mechanism) authenticated, ``refusals`` each refusal's message."""

    def __init__(self, upstream_port: int, *, users: Mapping[str, str] | None = None,
                 mechanisms: Sequence[str] = MECHANISMS, tls: ssl.SSLContext | None = None,
                 handshake_max: int = 1, authenticate_max: int = 2, iterations: int = 4096) -> None:
        self.upstream_port = upstream_port
        self.users = dict(users) if users is not None else None
        self.mechanisms = list(mechanisms)
        self.tls = tls
        self.handshake_max, self.authenticate_max = handshake_max, authenticate_max
        self.credentials: dict[str, dict[str, tuple[bytes, int, bytes, bytes]]] = {}
        for mechanism, name in SCRAM_HASHES.items():  # what Kafka stores per mechanism: salt, i, StoredKey, ServerKey
            table = self.credentials[mechanism] = {}
            for user, password in (self.users or {}).items():
                salt = os.urandom(16)
                salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
                client_key = hmac.digest(salted, b"Client Key", name)
                table[user] = (salt, iterations, hashlib.new(name, client_key).digest(),
                               hmac.digest(salted, b"Server Key", name))
        self.requests: list[LoggedRequest] = []
        self.logins: list[tuple[str, str]] = []
        self.refusals: list[str] = []
        self.port = 0
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[Any]] = set()
        self.streams: set[asyncio.StreamWriter] = set()  # both ends of every open connection

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def requests_of(self, api_key: int) -> list[LoggedRequest]:
        return [r for r in self.requests if r.api_key == api_key]

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, port or self.port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Closes the listener and every connection (the connections' tasks end on their own: the server's
        callback does not take a cancelled one)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for stream in list(self.streams):
            stream.transport.abort()
        if self.connections:
            await asyncio.wait(self.connections, timeout=5)

    # -- one client connection ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        self.streams.add(writer)
        upstream: asyncio.StreamWriter | None = None
        answers: asyncio.Task[None] | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(HOST, self.upstream_port)
            self.streams.add(upstream)
            user = None
            if self.users is not None:
                user = await self._authenticate(reader, writer, up_reader, upstream)
                if user is None:
                    return
            versions: dict[int, int] = {}  # correlation id -> version of the ApiVersions relayed: answers patched
            answers = asyncio.create_task(self._answers(up_reader, writer, versions))
            while (frame := await _read_frame(reader)) is not None:
                api_key, api_version, correlation_id, body = _parse_request(frame)
                self.requests.append(LoggedRequest(api_key, api_version, body, user))
                if api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE) and self.users is not None:
                    return  # no re-authentication: an illegal SASL state, the connection is closed
                if api_key == API_VERSIONS:
                    versions[correlation_id] = api_version
                upstream.write(_frame(frame))
                await upstream.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            if answers is not None:
                answers.cancel()
                await asyncio.gather(answers, return_exceptions=True)
            for stream in (writer, upstream):
                if stream is not None:
                    self.streams.discard(stream)
                    stream.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(stream.wait_closed(), 1)
            self.connections.discard(task)

    async def _answers(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       versions: dict[int, int]) -> None:
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError, ssl.SSLError):
            while (frame := await _read_frame(up_reader)) is not None:
                correlation_id = struct.unpack(">i", frame[:4])[0]
                if correlation_id in versions:
                    frame = self._patch_versions(frame, versions.pop(correlation_id))
                writer.write(_frame(frame))
                await writer.drain()
        writer.close()

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> str | None:
        """The SASL exchange as a Kafka broker runs it; the user authenticated, None when the connection is to
        be closed (a refusal was answered, or a request came that this state does not allow)."""
        mechanism = None
        handshook = False
        while (frame := await _read_frame(reader)) is not None:
            api_key, api_version, correlation_id, body = _parse_request(frame)
            self.requests.append(LoggedRequest(api_key, api_version, body, None))
            if api_key == API_VERSIONS and not handshook:
                upstream.write(_frame(frame))
                await upstream.drain()
                answer = await _read_frame(up_reader)
                if answer is None:
                    return None
                writer.write(_frame(self._patch_versions(answer, api_version)))
            elif api_key == SASL_HANDSHAKE and not handshook and api_version <= self.handshake_max:
                handshook = True
                name = Reader(body).string()
                known = name in self.mechanisms
                writer.write(_frame(struct.pack(">ih", correlation_id, 0 if known else UNSUPPORTED_SASL_MECHANISM)
                                    + _array([_string(m) for m in self.mechanisms])))
                if not known:
                    self.refusals.append(f"Unsupported SASL mechanism {name}")
                    await writer.drain()
                    return None
                mechanism = self._mechanism(name or "")
                if api_version == 0:  # raw tokens follow, without Kafka headers
                    await writer.drain()
                    return await self._raw_tokens(reader, writer, mechanism)
            elif api_key == SASL_AUTHENTICATE and mechanism is not None and api_version <= self.authenticate_max:
                compact = api_version >= 2
                token = Reader(body).bytes_(compact)
                try:
                    challenge, done = mechanism.step(token)
                except AuthFailed as exc:
                    self.refusals.append(str(exc))
                    writer.write(_frame(_authenticate_answer(correlation_id, api_version,
                                                             SASL_AUTHENTICATION_FAILED, str(exc), b"")))
                    await writer.drain()
                    return None
                writer.write(_frame(_authenticate_answer(correlation_id, api_version, 0, None, challenge)))
                await writer.drain()
                if done:
                    assert mechanism.user is not None
                    self.logins.append((mechanism.user, mechanism.mechanism))
                    return mechanism.user
            else:
                return None  # not allowed before authentication: the connection is closed
            await writer.drain()
        return None

    async def _raw_tokens(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          mechanism: _Scram | _Plain) -> str | None:
        """SASL after a v0 handshake: each token a 4-byte length and the bytes; a refusal just closes."""
        for _ in range(2):  # PLAIN takes one round, SCRAM two
            token = await _read_frame(reader)
            if token is None:
                return None
            try:
                challenge, done = mechanism.step(token)
            except AuthFailed as exc:
                self.refusals.append(str(exc))
                return None
            writer.write(_frame(challenge))
            await writer.drain()
            if done:
                assert mechanism.user is not None
                self.logins.append((mechanism.user, mechanism.mechanism))
                return mechanism.user
        return None

    def _mechanism(self, name: str) -> _Scram | _Plain:
        if name == "PLAIN":
            return _Plain(self.users or {})
        return _Scram(name, self.credentials[name])

    def _patch_versions(self, frame: bytes, version: int) -> bytes:
        """An ApiVersions answer (response header v0 at every version; compact from v3) advertising SaslHandshake
        and SaslAuthenticate as the front speaks them; an error answer (or no SASL) as it is."""
        body = Reader(frame[4:])
        if self.users is None or body.int16() != 0:
            return frame
        compact = version >= 3
        keys: dict[int, tuple[int, int, bytes]] = {}
        for _ in range(body.uvarint() - 1 if compact else body.int32()):
            key, low, high = struct.unpack(">hhh", body.take(6))
            start = body.at
            if compact:
                body.tagged_fields()
            keys[key] = (low, high, body.data[start:body.at])
        empty = b"\0" if compact else b""
        keys[SASL_HANDSHAKE] = (0, self.handshake_max, empty)
        keys[SASL_AUTHENTICATE] = (0, self.authenticate_max, empty)
        entries = b"".join(struct.pack(">hhh", k, low, high) + tags for k, (low, high, tags) in sorted(keys.items()))
        size = uvarint(len(keys) + 1) if compact else struct.pack(">i", len(keys))
        return frame[:6] + size + entries + body.rest()


def _parse_request(frame: bytes) -> tuple[int, int, int, bytes]:
    """api_key, api_version, correlation_id and the body after the request header (v1, or v2 when flexible)."""
    head = Reader(frame)
    api_key, api_version, correlation_id = struct.unpack(">hhi", head.take(8))
    head.string()  # client_id: a classic nullable string in every header version
    if flexible(api_key, api_version):
        head.tagged_fields()
    return api_key, api_version, correlation_id, head.rest()


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One size-prefixed frame; None at a clean end of stream."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    size = struct.unpack(">i", head)[0]
    if not 0 <= size <= MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _array(items: list[bytes]) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(items)


def _authenticate_answer(correlation_id: int, version: int, error: int, message: str | None, token: bytes) -> bytes:
    """A SaslAuthenticate response: v0 error, message, bytes; v1 + session_lifetime_ms; v2 compact, tagged."""
    text = None if message is None else message.encode()
    if version >= 2:
        head = struct.pack(">i", correlation_id) + b"\0"  # response header v1: tagged fields
        encoded = uvarint(0) if text is None else uvarint(len(text) + 1) + text
        return (head + struct.pack(">h", error) + encoded + uvarint(len(token) + 1) + token
                + struct.pack(">q", 0) + b"\0")
    encoded = struct.pack(">h", -1) if text is None else struct.pack(">h", len(text)) + text
    out = struct.pack(">ih", correlation_id, error) + encoded + struct.pack(">i", len(token)) + token
    return out + (struct.pack(">q", 0) if version >= 1 else b"")


@contextlib.asynccontextmanager
async def running_behind_front(workdir: Path, **front: Any) -> AsyncIterator[tuple[Tansu, KafkaFront]]:
    """A tansu advertising a started :class:`KafkaFront` (``front`` its options); both stopped on exit.
    A port another process took meanwhile: another pair, 3 tries."""
    for attempt in range(3):
        broker = Tansu(workdir)
        gate = KafkaFront(broker.port, **front)
        await gate.start()
        try:
            broker.start(advertised_port=gate.port)
        except PeerError:
            await gate.stop()
            if attempt == 2:
                raise
            continue
        try:
            yield broker, gate
        finally:
            await gate.stop()
            broker.stop()
        return
