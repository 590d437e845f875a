"""`agent migrate`: other tools' configs translated into pipeline files, printed on stdout."""

from __future__ import annotations

import sys

from agent.core.errors import EXIT_OK, ConfigError, ConfigErrors


def main(format_: str, path: str, parsers: list[str] | None = None, allow_partial: bool = False) -> int:
    """Print the pipeline for the ``format_`` config in ``path``; ConfigErrors (exit 78) when it cannot be read.

    ``fluent-bit`` exits 1 when something was left out, unless ``allow_partial``."""
    if format_ == "fluent-bit":
        from agent.migrate import fluent_bit

        return fluent_bit.main(path, parsers or [], allow_partial)
    from agent.migrate.prometheus import migrate

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read: {exc.strerror}", file=path)]) from None
    except UnicodeDecodeError:
        raise ConfigErrors([ConfigError("not UTF-8 text", file=path)]) from None
    try:
        sys.stdout.write(migrate(text, path))
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    return EXIT_OK
