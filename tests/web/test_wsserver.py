"""The trimmed uvicorn protocol's queue and event (server/web/wsserver.py); every socket
test of the suite runs through the protocol itself."""

from __future__ import annotations

import asyncio

from server.web.wsserver import LeanEvent, LeanQueue


async def test_queue_keeps_order_and_wakes_its_consumer() -> None:
    queue = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert queue.qsize() == 2
    assert [await queue.get(), await queue.get()] == [1, 2]
    assert queue.empty()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3
    assert queue._items is None and queue._waiter is None  # nothing held while idle


async def test_a_cancelled_get_leaves_the_queue_usable() -> None:
    queue = LeanQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    queue.put_nowait("next")
    assert await asyncio.wait_for(queue.get(), 1) == "next"


async def test_event_wakes_every_waiter_and_can_be_cleared() -> None:
    event = LeanEvent(True)
    assert await asyncio.wait_for(event.wait(), 1)
    event.clear()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert event.is_set() and event._waiters is None
