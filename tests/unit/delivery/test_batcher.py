from __future__ import annotations

from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.delivery.batcher import Batcher


def test_partitions_fill_by_events_and_acks_finish_when_every_part_is_done() -> None:
    seen: list[AckStatus] = []
    batcher = Batcher(lambda e: e["index"], max_events=3, max_bytes=1 << 20, timeout=1.0)
    events = [{"index": "a" if i % 2 else "b", "i": i} for i in range(8)]
    full = batcher.add(Batch(events, Kind.LOGS, 800, [Ack(seen.append)]))
    assert [(r.key, len(r.events)) for r in full] == [("b", 3), ("a", 3)]
    rest = batcher.drain()
    assert sorted((r.key, len(r.events)) for r in rest) == [("a", 1), ("b", 1)]
    for request in full + rest[:-1]:
        request.finalize(AckStatus.DELIVERED)
    assert seen == []
    rest[-1].finalize(AckStatus.REJECTED)
    assert seen == [AckStatus.REJECTED]


def test_bytes_and_timeouts_close_partitions() -> None:
    batcher = Batcher(None, max_events=1000, max_bytes=250, timeout=0.5)
    full = batcher.add(Batch([b"x" * 99] * 5, Kind.LINES, 500))
    assert [len(r.events) for r in full] == [3]  # 3 x 100 B estimated reaches 250 B
    assert batcher.expired(now=0.0) == []
    deadline = batcher.next_deadline()
    assert deadline is not None
    assert [len(r.events) for r in batcher.expired(now=deadline)] == [2]


def test_an_event_whose_key_raises_goes_to_the_default_partition_and_is_counted() -> None:
    seen: list[AckStatus] = []
    batcher = Batcher(lambda e: e["index"], max_events=10, max_bytes=1 << 20, timeout=1.0)
    events = [{"index": "a"}, {"no index": True}, {"index": "a"}]
    assert batcher.add(Batch(events, Kind.LOGS, 300, [Ack(seen.append)])) == []
    assert batcher.key_errors == 1
    parts = sorted(batcher.drain(), key=lambda r: str(r.key))
    assert [(r.key, r.events) for r in parts] == [(None, [events[1]]), ("a", [events[0], events[2]])]
    for request in parts:
        request.finalize(AckStatus.DELIVERED)
    assert seen == [AckStatus.DELIVERED]
