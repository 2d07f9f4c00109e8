"""Group commit: many writers, one transaction.

Chat messages and standalone audit rows arrive one by one from many sockets and
requests, each with its caller waiting for it to be durable. Committing them one by
one costs one transaction each and, for the audit trail, one turn of a lock that
serialises the whole chain. A :class:`Batcher` queues them and lets one task write
everything that arrived while the previous batch was being written, in one
transaction: a lone item is written at once, a burst costs a commit per batch.
One batch is in flight at a time: measured with the room fan-out benchmark, two or
three concurrent batches on PostgreSQL raised latency (more, smaller transactions
competing for the same two cores).

With ``expect``, a batch may wait a moment for the items its caller knows are on
their way (``linger_s`` at most): writers that each wait for their previous item
before sending the next (HL7 original mode) answer a batch's results at slightly
different moments, and without the wait the first to answer would be written alone
and the others in the next batch, two transactions where one would do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``await batcher.submit(item)`` returns what ``write`` gave for that item, or
    raises what ``write`` raised for its whole batch (nothing of a failed batch is
    written: ``write`` runs in one transaction)."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        limit: int = 500,
        *,
        expect: Callable[[], int] | None = None,
        linger_s: float = 0.0,
    ):
        self._write = write
        self._limit = limit
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        # How many items a batch should hold, and how long to wait for them.
        self._expect = expect
        self._linger_s = linger_s
        self._wanted = 0
        self._enough: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> R:
        return await self.post(item)

    def post(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` without waiting: items are written in the order they were
        posted; the future holds what ``write`` gave for it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        elif self._enough is not None and len(self._pending) >= self._wanted:
            if not self._enough.done():
                self._enough.set_result(None)
        return future

    async def flush(self) -> None:
        """Return once everything posted so far is written (or has failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _linger(self) -> None:
        """Wait, ``linger_s`` at most, until ``expect()`` items are pending."""
        if self._expect is None:
            return
        wanted = min(self._expect(), self._limit)
        if len(self._pending) >= wanted:
            return
        loop = asyncio.get_running_loop()
        self._wanted, self._enough = wanted, loop.create_future()
        enough = self._enough

        def wake() -> None:
            if not enough.done():
                enough.set_result(None)

        timer = loop.call_later(self._linger_s, wake)
        try:
            await enough
        finally:
            timer.cancel()
            self._enough = None

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._linger()
                batch = self._pending[: self._limit]
                del self._pending[: self._limit]
                try:
                    results = await self._write([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            # Cleared by the task itself, not by a done callback: an item submitted
            # between the last batch and the callback would find a finished task
            # still registered and wait forever.
            self._task = None
            for _, future in self._pending:  # cancelled with work left: do not strand it
                future.cancel()
            self._pending.clear()
