"""``GET /api/exams/{id}/turnaround`` and ``GET /api/stats/turnaround``
(docs/roster.md "Turnaround")."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError
from server.core.models import Establishment, Exam
from server.exams.authz import load_exam, require_role
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


routes = [
    Route("/exams/{exam_id}/turnaround", exam_turnaround, methods=["GET"]),
    Route("/stats/turnaround", stats_turnaround, methods=["GET"]),
]
