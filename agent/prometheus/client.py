"""What every Prometheus HTTP client config (``HttpClientSettings``) means on the wire, for scrapes, http_sd,
kubernetes_sd and remote-write alike: the ``Authorization`` header and the TLS context.

Paths (secret files, CA, certificate and key) are taken relative to the config's directory, as Prometheus
does. A secret file is read again whenever it changes (a rotated secret is picked up by the next request)
and trimmed of surrounding whitespace; its content never appears in an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from agent.core.errors import RetryableError
from agent.delivery.config import TlsConfig
from agent.delivery.http import ssl_context as delivery_ssl_context
from agent.kubernetes.config import Secret, SecretFile, authorization_header
from agent.prometheus.config import HttpClientSettings, TLSConfig


class CredentialsError(RetryableError):
    """A secret file that cannot be read now (it may come back): the message names the file, never a secret."""

    error_type = "credentials_unreadable"


class Credentials:
    """The ``Authorization`` header of one config: ``basic_auth`` (``password`` or ``password_file``),
    ``authorization`` (``type``, ``credentials`` or ``credentials_file``) or ``bearer_token(_file)``.

    ``authorization`` and ``basic_auth`` hold the chosen form as ``(type, secret)`` and ``(username, secret)``,
    the shapes :class:`agent.kubernetes.config.ClusterConfig` takes.
    """

    def __init__(self, settings: HttpClientSettings, config_dir: Path) -> None:
        self.dir = config_dir
        self.file: Path | None = None  # the secret's file, if it is in one
        self.authorization: tuple[str, Secret] | None = None
        self.basic_auth: tuple[str, Secret] | None = None
        if (basic := settings.basic_auth) is not None:
            self.basic_auth = (basic.username, self._secret(basic.password, basic.password_file))
        elif (auth := settings.authorization) is not None:
            self.authorization = (auth.type.strip(), self._secret(auth.credentials, auth.credentials_file))
        elif settings.bearer_token_file or settings.bearer_token:
            self.authorization = ("Bearer", self._secret(settings.bearer_token, settings.bearer_token_file))

    def _secret(self, value: str | None, file: str | None) -> Secret:
        if not file:
            return value or ""
        self.file = self.dir / file
        return SecretFile(self.file)

    def header(self) -> dict[str, str]:
        """``{"Authorization": ...}`` (empty without credentials); raises CredentialsError for a secret file that
        cannot be read or is not UTF-8 text."""
        try:
            return authorization_header(self.authorization, self.basic_auth)
        except OSError as exc:
            raise CredentialsError(f"cannot read a credentials file: {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CredentialsError(f"cannot read a credentials file: {self.file}: not UTF-8 text") from None


def ssl_context(tls: TLSConfig, config_dir: Path) -> ssl.SSLContext:
    """A ``tls_config`` as a client TLS context: its CA (else the system's), client certificate and key,
    ``server_name`` (sent and verified instead of the host dialled) and ``insecure_skip_verify``.

    A file that cannot be loaded is a BuildError naming it."""

    def path(name: str | None) -> str | None:
        return None if name is None else str(config_dir / name)

    verify = not tls.insecure_skip_verify
    return delivery_ssl_context(TlsConfig(ca_file=path(tls.ca_file), cert_file=path(tls.cert_file),
                                          key_file=path(tls.key_file), verify_certificate=verify,
                                          verify_hostname=verify), tls.server_name)
