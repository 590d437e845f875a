from __future__ import annotations

import asyncio

from agent.delivery.concurrency import Limiter


def test_adaptive_grows_while_fast_and_halves_on_429_or_a_latency_jump() -> None:
    limiter = Limiter(8, adaptive=True, maximum=8)
    assert limiter.limit == 1
    for _ in range(40):
        limiter.observe(0.01, throttled=False)
    assert limiter.limit == 8  # additive increase, capped
    limiter.observe(0.01, throttled=True)
    assert limiter.limit == 4
    limiter.observe(1.0, throttled=False)  # 100x the moving average
    assert limiter.limit == 2


async def test_acquire_waits_for_a_free_slot() -> None:
    limiter = Limiter(2)
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()
    limiter.release()
    await asyncio.wait_for(third, 1)
    assert limiter.in_flight == 2
