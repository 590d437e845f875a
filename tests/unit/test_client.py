from __future__ import annotations

from rich.console import Console

from agent.client import rates, render_table


def component(cid: str, received: int, sent: int, sent_bytes: int, blocked: float = 0.0) -> dict:
    return {"id": cid, "kind": "sink", "type": "file", "received_events": received, "sent_events": sent,
            "sent_bytes": sent_bytes, "errors": 2, "discarded_events": 0,
            "buffer": {"events": 250, "bytes": 10, "max_events": 1000, "max_bytes": 1 << 20, "full_waits": 3,
                       "blocked_seconds": blocked}}


def test_top_rows_show_rates_and_buffer_fill() -> None:
    before = {"out": component("out", 1000, 900, 0)}
    rows = rates(before, [component("out", 3000, 2900, 4 << 20, blocked=1.5)], elapsed=2.0)
    assert rows[0]["received_events_rate"] == 1000 and rows[0]["sent_bytes_rate"] == 2 << 20
    assert rows[0]["blocked_share"] == 0.75  # its producers waited 1.5 s of the 2
    console = Console(width=140, record=True)
    console.print(render_table(rows, "127.0.0.1:2020"))
    text = console.export_text()
    assert "out" in text and "1,000" in text and "2.00" in text and "25.0% (250 ev)" in text and "75%" in text
