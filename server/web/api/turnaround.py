"""``GET /api/exams/{id}/turnaround`` and ``GET /api/stats/turnaround``
(docs/roster.md "Turnaround")."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import EventKind, Role
from server.core.errors import ApiError
from server.core.models import Establishment, Exam, ExamEvent
from server.exams.authz import load_exam, require_role
from server.exams.stroke import stroke_summary
from server.exams.turnaround import figures, milestones, summarise
from server.web.request import authenticate, ctx


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def exam_turnaround(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    async with app.read() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        times = milestones(exam)
    result = figures(times, app.settings.report_sla_s, app.now())
    stamps = {k: _iso(v) for k, v in times.items()}
    body = {"exam": exam.id, "status": exam.status, "milestones": stamps}
    return JSONResponse({**body, **result, "report_sla_s": app.settings.report_sla_s})


def _bound(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        if len(raw) == 10:  # a bare date: from midnight UTC
            value = datetime.combine(date.fromisoformat(raw), time(), UTC)
        else:
            value = datetime.fromisoformat(raw.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an ISO 8601 date or time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def stats_turnaround(request: Request) -> Response:
    """Per establishment over exams requested in [from, to): coordinators only."""
    principal = await authenticate(request)
    require_role(principal, Role.COORDINATOR)
    app = ctx(request)
    start, end = _bound(request, "from"), _bound(request, "to")
    stmt = select(Exam).join(Establishment, Establishment.id == Exam.establishment_id)
    code = request.query_params.get("establishment")
    if code:
        stmt = stmt.where(Establishment.code == code.upper())
    if start:
        stmt = stmt.where(Exam.created_at >= start)
    if end:
        stmt = stmt.where(Exam.created_at < end)
    now = app.now()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async with app.read() as db:
        for exam in (await db.scalars(stmt.where(Exam.status != "cancelled"))).unique():
            groups[exam.establishment.code].append(
                figures(milestones(exam), app.settings.report_sla_s, now)
            )
    every = [row for rows in groups.values() for row in rows]
    return JSONResponse(
        {
            "from": _iso(start),
            "to": _iso(end),
            "establishments": {c: summarise(rows) for c, rows in sorted(groups.items())},
            "all": summarise(every),
        }
    )


def _month(request: Request, now: datetime) -> tuple[str, datetime, datetime]:
    raw = request.query_params.get("month") or f"{now:%Y-%m}"
    try:
        year, month = (int(part) for part in raw.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ApiError(400, "bad_parameter", "month must be YYYY-MM") from None
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return f"{start:%Y-%m}", start, end


async def stats_stroke(request: Request) -> Response:
    """The stroke alerts requested in a month (UTC), per establishment: coordinators
    only (docs/stroke.md "Figures")."""
    principal = await authenticate(request)
    require_role(principal, Role.COORDINATOR)
    app = ctx(request)
    label, start, end = _month(request, app.now())
    stmt = (
        select(Exam)
        .join(Establishment, Establishment.id == Exam.establishment_id)
        .where(
            Exam.stroke_onset_kind.is_not(None),
            Exam.created_at >= start,
            Exam.created_at < end,
            Exam.status != "cancelled",
        )
    )
    code = request.query_params.get("establishment")
    if code:
        stmt = stmt.where(Establishment.code == code.upper())
    groups: dict[str, list[dict[str, datetime | None]]] = defaultdict(list)
    async with app.read() as db:
        exams = (await db.scalars(stmt)).unique().all()
        first: dict[str, datetime] = dict(
            (
                await db.execute(
                    select(ExamEvent.exam_id, func.min(ExamEvent.at))
                    .where(
                        ExamEvent.exam_id.in_([e.id for e in exams]),
                        ExamEvent.kind == EventKind.IMAGES_RECEIVED,
                    )
                    .group_by(ExamEvent.exam_id)
                )
            ).all()
        )
        for exam in exams:
            groups[exam.establishment.code].append(
                {
                    "onset": exam.stroke_onset_at,
                    "requested": exam.created_at,
                    "first_image": first.get(exam.id),
                    "reported": exam.reported_at,
                }
            )
    every = [row for rows in groups.values() for row in rows]
    return JSONResponse(
        {
            "month": label,
            "establishments": {c: stroke_summary(rows) for c, rows in sorted(groups.items())},
            "all": stroke_summary(every),
        }
    )


routes = [
    Route("/stats/stroke", stats_stroke, methods=["GET"]),
    Route("/exams/{exam_id}/turnaround", exam_turnaround, methods=["GET"]),
    Route("/stats/turnaround", stats_turnaround, methods=["GET"]),
]
