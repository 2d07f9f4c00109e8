"""A lifecycle command run as a caller, without HTTP (``server.exams.commands``):
the route only parses and answers, so the rules hold for any caller of the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from rooms.lifecycle import Command
from server.accounts import auth
from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.core.errors import ApiError
from server.core.identity import Principal
from server.core.models import ExamEvent
from server.exams import commands
from server.live.context import LiveContext
from tests.conftest import Accounts
from tests.helpers import PASSWORD
from tests.roster.conftest import new_exam


@pytest.fixture
async def app(settings: Settings, accounts: Accounts) -> AsyncIterator[LiveContext]:
    async with app_context(settings) as context:
        yield context


async def caller(app: LiveContext, username: str) -> Principal:
    async with app.db() as db:
        token, _ = await auth.login(app, db, username, PASSWORD, "127.0.0.1")
        await db.commit()
    return await auth.authenticate(app, token)


async def test_a_command_writes_the_event_and_audits_the_callers_address(
    app: LiveContext,
) -> None:
    async with app.db() as db:
        exam_id = await new_exam(app, db, datetime.now(UTC))
    rad = await caller(app, "rad")

    body = commands.ProtocolBody(protocol_id=None, text="Scanner sans injection")
    with pytest.raises(ApiError) as refused:  # not accepted yet: 409, nothing written
        await commands.run(app, rad, exam_id, Command.PROTOCOL, body, addr="192.0.2.9")
    assert (refused.value.status, refused.value.code) == (409, "wrong_state")

    result = await commands.run(app, rad, exam_id, Command.ACCEPT, None, addr="192.0.2.9")
    assert result["status"] == "accepted"
    async with app.read() as db:
        kinds = (
            await db.scalars(
                select(ExamEvent.kind).where(ExamEvent.exam_id == exam_id).order_by(ExamEvent.seq)
            )
        ).all()
        audited = (
            await db.execute(
                select(AuditEntry.action, AuditEntry.addr).where(
                    AuditEntry.exam_id == exam_id, AuditEntry.action.like("command.%")
                )
            )
        ).all()
    assert kinds == ["exam.requested", "exam.accepted"]
    assert [tuple(row) for row in audited] == [("command.accept", "192.0.2.9")]


async def test_a_role_that_may_not_is_refused_before_anything_is_written(
    app: LiveContext,
) -> None:
    async with app.db() as db:
        exam_id = await new_exam(app, db, datetime.now(UTC))
    urg = await caller(app, "urg_a")
    with pytest.raises(ApiError) as refused:
        await commands.run(app, urg, exam_id, Command.ACCEPT, None, addr=None)
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    async with app.read() as db:
        count = await db.scalar(
            select(func.count()).select_from(ExamEvent).where(ExamEvent.exam_id == exam_id)
        )
    assert count == 1
