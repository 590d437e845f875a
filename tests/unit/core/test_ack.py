from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.ack import Ack, AckStatus, OrderedAcks


def test_ack_reports_once_after_last_release_with_worst_status() -> None:
    seen: list[AckStatus] = []
    ack = Ack(seen.append)
    ack.retain(2)
    ack.release(AckStatus.DELIVERED)
    ack.release(AckStatus.ERRORED)
    assert seen == []
    ack.release(AckStatus.REJECTED)
    assert seen == [AckStatus.ERRORED]


def test_ack_released_too_often_is_an_error() -> None:
    ack = Ack(lambda status: None)
    ack.release()
    with pytest.raises(RuntimeError):
        ack.release()


@given(st.lists(st.sampled_from(list(AckStatus)), min_size=1, max_size=8), st.randoms())
def test_merged_status_is_the_worst_whatever_the_release_order(statuses: list[AckStatus], rnd) -> None:
    seen: list[AckStatus] = []
    ack = Ack(seen.append)
    ack.retain(len(statuses) - 1)
    shuffled = statuses[:]
    rnd.shuffle(shuffled)
    for status in shuffled:
        ack.release(status)
    assert seen == [max(statuses)]


def test_ordered_acks_commit_only_a_contiguous_prefix() -> None:
    commits: list[int] = []
    ordered: OrderedAcks[int] = OrderedAcks(commits.append)
    first, second, third = ordered.track(10), ordered.track(20), ordered.track(30)
    third.release()
    second.release()
    assert commits == [] and ordered.position is None
    first.release()
    assert commits == [30]
    assert ordered.in_flight == 0


def test_rejected_batches_let_the_position_move_but_errored_ones_stop_it() -> None:
    ordered: OrderedAcks[int] = OrderedAcks()
    a, b, c, d = (ordered.track(n) for n in (1, 2, 3, 4))
    a.release(AckStatus.REJECTED)
    assert ordered.position == 1
    b.release(AckStatus.ERRORED)
    c.release()
    d.release()
    assert ordered.position == 1
    assert ordered.stuck and ordered.errored == 1


async def test_wait_idle_returns_when_everything_finished() -> None:
    ordered: OrderedAcks[int] = OrderedAcks()
    ack = ordered.track(1)
    assert not ordered._idle.is_set()
    ack.release()
    await ordered.wait_idle()
