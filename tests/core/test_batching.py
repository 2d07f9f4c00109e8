"""Group commit (server/core/batching.py): a batch may wait a moment for the items its
caller expects, never longer than ``linger_s``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from server.core.batching import Batcher


class Log:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def write(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        return [item * 10 for item in items]


async def test_a_batch_waits_for_the_items_on_their_way() -> None:
    log = Log()
    batcher: Batcher[int, int] = Batcher(log.write, expect=lambda: 3, linger_s=5.0)

    async def later(item: int) -> int:
        await asyncio.sleep(0.01)
        return await batcher.submit(item)

    started = time.monotonic()
    results = await asyncio.gather(batcher.submit(1), later(2), later(3))
    assert results == [10, 20, 30]
    assert log.batches == [[1, 2, 3]]  # one batch, not [1] then [2, 3]
    assert time.monotonic() - started < 1.0  # written once the third came, not at 5 s


async def test_a_batch_waits_no_longer_than_linger() -> None:
    log = Log()
    batcher: Batcher[int, int] = Batcher(log.write, expect=lambda: 10, linger_s=0.02)
    started = time.monotonic()
    assert await batcher.submit(1) == 10
    assert 0.02 <= time.monotonic() - started < 1.0
    assert log.batches == [[1]]


async def test_nothing_expected_nothing_waited() -> None:
    log = Log()
    batcher: Batcher[int, int] = Batcher(log.write, expect=lambda: 1, linger_s=5.0)
    started = time.monotonic()
    assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [10, 20]
    assert time.monotonic() - started < 1.0
    assert log.batches == [[1, 2]]
