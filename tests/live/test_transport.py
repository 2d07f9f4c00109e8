"""The exam room without a server: ``server.live.room.enter`` driven over a
transport made of two queues (docs/architecture.md "What each package owns":
the room works on a ``Transport``; only the web layer speaks Starlette)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from rooms.types import CloseCode, EventKind
from server.accounts import auth
from server.composition import app_context
from server.core.config import Settings
from server.core.identity import Principal
from server.core.models import ExamEvent
from server.live import room
from server.live.context import LiveContext
from tests.conftest import Accounts
from tests.helpers import PASSWORD
from tests.roster.conftest import new_exam


class QueueTransport:
    """A ``Transport`` (server/live/outbox.py) with a client at the other end of
    two queues: what the room sends lands in ``sent``; what the test puts in
    ``inbox`` is the client's next frame (None: the client has gone), handed to
    the room as the ASGI WebSocket event a server would give."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def send_text(self, data: str) -> None:
        self.sent.put_nowait(json.loads(data))

    async def receive(self) -> dict[str, Any]:
        text = await self.inbox.get()
        if text is None:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": text}

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def next(self, kind: str) -> dict[str, Any]:
        """The next frame of type ``kind`` the room sent (others are skipped)."""
        while True:
            frame = await asyncio.wait_for(self.sent.get(), 10)
            if frame["type"] == kind:
                return frame


@pytest.fixture
async def live(settings: Settings, accounts: Accounts) -> AsyncIterator[LiveContext]:
    async with app_context(settings) as app:
        app.rooms.start()
        try:
            yield app
        finally:
            await app.rooms.close()


async def caller(app: LiveContext, username: str) -> Principal:
    async with app.db() as db:
        token, _ = await auth.login(app, db, username, PASSWORD, "127.0.0.1")
        await db.commit()
    return (await auth.authenticate(app, token)).detached()


async def test_a_member_is_welcomed_chats_and_leaves(live: LiveContext) -> None:
    transport = QueueTransport()
    async with live.db() as db:
        exam_id = await new_exam(live, db, datetime.now(UTC))
    urg = await caller(live, "urg_a")
    member = asyncio.create_task(room.enter(live, transport, urg, exam_id, 0, "192.0.2.7"))

    welcome = await transport.next("welcome")
    assert welcome["exam"]["id"] == exam_id
    assert welcome["you"]["username"] == "urg_a"
    transport.inbox.put_nowait(json.dumps({"type": "chat", "id": "c-1", "text": "bonjour"}))
    ack = await transport.next("ack")
    event = await transport.next("event")
    assert event["event"]["seq"] == ack["seq"]
    assert event["event"]["body"]["text"] == "bonjour"

    transport.inbox.put_nowait(None)  # the client has gone
    assert await asyncio.wait_for(member, 10) is None
    assert live.rooms.connection_count == 0
    async with live.read() as db:
        kinds = (await db.scalars(select(ExamEvent.kind).where(ExamEvent.exam_id == exam_id))).all()
    assert EventKind.CHAT_MESSAGE in kinds


async def test_a_refused_caller_gets_the_refusal_and_nothing_is_sent(live: LiveContext) -> None:
    async with live.db() as db:
        exam_id = await new_exam(live, db, datetime.now(UTC))
    transport = QueueTransport()

    refusal = await room.enter(live, transport, await caller(live, "admin"), exam_id, 0, "x")
    assert refusal == room.NOT_PARTICIPANT
    assert refusal.close_code == CloseCode.FORBIDDEN
    refusal = await room.enter(live, transport, await caller(live, "urg_b"), exam_id, 0, "x")
    assert refusal == room.NO_SUCH_EXAM  # another establishment's exam looks missing
    assert refusal.close_code == CloseCode.NO_SUCH_EXAM
    assert transport.sent.empty() and transport.closed is None
