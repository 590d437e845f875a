"""The CLI turns start-up failures into one line and exit 1."""

from __future__ import annotations

import pytest

from agent import cli
from agent.core.errors import StartupError


@pytest.mark.parametrize("raised", [
    StartupError('source "tcp_in": 0.0.0.0:5170 is in use; set address'),
    ExceptionGroup("start", [StartupError('source "tcp_in": 0.0.0.0:5170 is in use; set address')]),
])
def test_a_startup_error_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                raised: Exception) -> None:
    def fail(args: object) -> int:
        raise raised

    monkeypatch.setattr(cli, "_dispatch", fail)
    assert cli.main(["run"]) == 1
    assert capsys.readouterr().err == 'error: source "tcp_in": 0.0.0.0:5170 is in use; set address\n'


def test_other_errors_in_a_group_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: object) -> int:
        raise ExceptionGroup("start", [StartupError("port"), ValueError("a bug")])

    monkeypatch.setattr(cli, "_dispatch", fail)
    with pytest.raises(ExceptionGroup):
        cli.main(["run"])
