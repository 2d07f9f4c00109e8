"""A hospital's HL7 receiver for the tests: python-hl7's own MLLP server on a real
socket, recording every message and answering as the test says."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import hl7
from hl7.mllp import start_hl7_server

from server.testing import free_port


class Receiver:
    """``answer``: ``AA``, ``AE``, ``AR``, or ``None`` (read and stay silent)."""

    def __init__(
        self, port: int | None = None, answer: str | None = "AA", tls: ssl.SSLContext | None = None
    ) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.answer = answer
        self.received: list[hl7.Message] = []
        self.arrived = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def _client(self, reader: Any, writer: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                message = await reader.readmessage()
                self.received.append(message)
                self.arrived.set()
                if self.answer is not None:
                    writer.writemessage(message.create_ack(self.answer))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def start(self) -> Receiver:
        self.server = await start_hl7_server(
            self._client,
            "127.0.0.1",
            self.port,
            encoding="utf-8",
            ssl=self.tls,
            # A report can carry the exam's record (a PDF/A of some hundred KB in
            # base64): hospital receivers take such messages, so does this one.
            limit=4 * 1024 * 1024,
        )
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._clients):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.server.wait_closed()
            self.server = None

    def of_type(self, kind: str) -> list[hl7.Message]:
        """Messages whose MSH-9 starts with ``kind`` (``ORU``, ``MDM``)."""
        return [m for m in self.received if str(m.segment("MSH")(9)).startswith(kind)]

    async def wait_for(self, count: int, limit_s: float = 20.0) -> list[hl7.Message]:
        """Until ``count`` messages have arrived (a bound, not a timing assert)."""
        async with asyncio.timeout(limit_s):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received
