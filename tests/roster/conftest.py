"""Helpers for the roster tests: exams written straight to SQL, users by name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.context import AppContext
from server.core.models import User
from server.exams.service import ExamRequest, create_exam
from server.roster.service import Shift
from tests.helpers import exam_payload


async def user_id(db: AsyncSession, username: str) -> int:
    uid = await db.scalar(select(User.id).where(User.username == username))
    assert uid is not None
    return uid


async def new_exam(
    app: AppContext, db: AsyncSession, at: datetime, requester: str = "urg_a", **kw: Any
) -> str:
    user = await db.scalar(select(User).where(User.username == requester))
    assert user is not None
    req = ExamRequest.model_validate(exam_payload(**kw))
    exam, _ = await create_exam(db, app.settings, user, req, at)
    await db.commit()
    return exam.id


async def add_shift(
    db: AsyncSession, username: str, start: datetime, hours: float = 12, **kw: Any
) -> Shift:
    values: dict[str, Any] = {
        "radiologist_id": await user_id(db, username),
        "role": "primary",
        "kind": "oncall",
        "starts_at": start,
        "ends_at": start + timedelta(hours=hours),
        "establishment_ids": [],
        "max_in_progress": 5,
        "created_at": start,
    }
    values.update(kw)
    row = Shift(**values)
    db.add(row)
    await db.commit()
    return row
