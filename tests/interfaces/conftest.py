"""Fixtures of the interface tests: the MLLP listener on a free port over the test
database, and a sender using python-hl7's own asyncio MLLP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import func, select

from server.composition import core_context
from server.core.config import Settings
from server.core.context import AppContext
from server.interfaces.listener import Listener
from server.interfaces.senders import add_sender
from tests.conftest import Accounts


@dataclass
class Hl7Listener:
    app: AppContext
    listener: Listener

    @property
    def port(self) -> int:
        return self.listener.port

    async def send(self, *messages: str | bytes, encoding: str = "utf-8") -> list[hl7.Message]:
        """Each message over one connection, in order; the parsed ACKs."""
        reader, writer = await open_hl7_connection("127.0.0.1", self.port, encoding=encoding)
        acks = []
        try:
            for message in messages:
                data = message if isinstance(message, bytes) else message.encode(encoding)
                writer.writeblock(data)
                await writer.drain()
                acks.append(await reader.readmessage())
        finally:
            writer.close()
            await writer.wait_closed()
        return acks

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app.read() as db:
            return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
async def hl7_listener(settings: Settings, accounts: Accounts) -> AsyncIterator[Hl7Listener]:
    """The listener on 127.0.0.1; DPI/CHU_A sends for HOPA, DPI/CHU_B for HOPB."""
    async with core_context(settings) as app:
        async with app.db() as db:
            await add_sender(app, db, "DPI", "CHU_A", "HOPA")
            await add_sender(app, db, "DPI", "CHU_B", "HOPB")
            await db.commit()
        listener = Listener(app, "127.0.0.1", 0)
        await listener.start()
        try:
            yield Hl7Listener(app, listener)
        finally:
            await listener.stop()


def ack_code(ack: hl7.Message) -> str:
    return str(ack.segment("MSA")(1))


def err(ack: hl7.Message) -> tuple[str, str]:
    """(ERR-2 location, ERR-3 code) of the first ERR segment."""
    seg = ack.segment("ERR")
    return str(seg(2)), str(seg(3)(1)(1))
