"""A background loop's Waker: woken by a commit or its interval, and always cancellable."""

import asyncio

import pytest

from bazaar.platform.loops import Waker


async def test_a_wake_during_work_is_kept_for_the_next_wait() -> None:
    waker = Waker(interval=10)
    waker.wake()
    await asyncio.wait_for(waker.wait(), 1)  # returns at once, not after 10 s


async def test_the_interval_ends_a_wait() -> None:
    waker = Waker(interval=0.01)
    await asyncio.wait_for(waker.wait(), 1)


async def test_a_cancel_that_comes_with_a_wake_still_stops_the_loop() -> None:
    waker = Waker(interval=10)
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await waker.wait()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    waker.wake()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert rounds == 1
