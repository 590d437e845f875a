"""A password in a sink's URL (``http://user:password@host``) never reaches an error message or a log line."""

from __future__ import annotations

import socket

import pytest

from agent.core.errors import RetryableError
from agent.delivery.config import TlsConfig
from agent.delivery.http import HttpClient, redacted


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused at once
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_names_the_url_without_its_password() -> None:
    port = closed_port()
    client = HttpClient(TlsConfig(), None, {}, 5.0)
    try:
        with pytest.raises(RetryableError) as error:
            await client.request("POST", f"http://writer:s3cr3t-PW@127.0.0.1:{port}/api/v1/write", b"x")
    finally:
        await client.close()
    assert "s3cr3t-PW" not in str(error.value)
    assert f"POST http://writer:xxxxx@127.0.0.1:{port}/api/v1/write: " in str(error.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p%40ss@h:9200/x?q=1", "https://u:xxxxx@h:9200/x?q=1"),  # as Go's URL.Redacted() writes it
    ("http://u@h/x", "http://u@h/x"),
    ("http://h:1/x", "http://h:1/x"),
])
def test_redacted_hides_only_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_an_error_answer_names_the_url_without_its_password() -> None:
    from agent.core.errors import PermanentError
    from agent.delivery.http import Response, raise_for_status

    answer = Response(404, {}, b"not found")
    with pytest.raises(PermanentError) as error:
        raise_for_status(answer, "POST http://writer:s3cr3t-PW@es:9200/_bulk")
    assert "s3cr3t-PW" not in str(error.value) and "POST http://writer:xxxxx@es:9200/_bulk: HTTP 404" in str(error.value)
