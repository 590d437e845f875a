"""Relabelling as Prometheus does it (``relabel_configs``, ``metric_relabel_configs``, ``write_relabel_configs``).

The config struct is here; the engine (``Relabeler``) is being written next to it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Action = Literal["replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop",
                 "labelkeep", "lowercase", "uppercase"]


class RelabelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One relabelling rule, with Prometheus's keys and defaults."""

    source_labels: list[str] = msgspec.field(default_factory=list)
    separator: str = ";"
    regex: str = "(.*)"
    modulus: int | None = None
    target_label: str | None = None
    replacement: str = "$1"
    action: Action = "replace"
