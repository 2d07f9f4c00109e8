"""Exam requests and the worklist: ``/api/exams`` (docs/api.md "Exams and commands")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.permissions import visible
from rooms.types import EventKind, ExamStatus, Role
from server.archive.firstimage import first_image
from server.core.errors import ApiError
from server.core.identity import Principal
from server.core.models import Establishment, Exam, ExamEvent, User
from server.exams import routing
from server.exams.authz import exam_scope, load_exam, require_role
from server.exams.publish import publish_events
from server.exams.service import ExamRequest, create_exam, event_json, exam_json, linked_request
from server.web.http import parse
from server.web.request import authenticate, ctx, record_request

CLOSED = (ExamStatus.DELIVERED, ExamStatus.CANCELLED)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


async def request_exam(request: Request) -> Response:
    principal = await authenticate(request)
    require_role(principal, Role.URGENTIST)
    req = await parse(request, ExamRequest)
    exam, body = await create_requested(request, principal, req)
    return JSONResponse(body, status_code=201, headers={"Location": f"/api/exams/{exam.id}"})


async def create_requested(
    request: Request, principal: Principal, req: ExamRequest
) -> tuple[Exam, dict[str, Any]]:
    """Create, route and announce an urgentist's request (also ``POST /fhir/ServiceRequest``)."""
    app = ctx(request)
    now = app.now()
    async with app.db() as db:
        user = await db.get_one(User, principal.user.id)
        assert user.establishment_id is not None
        req, identity = await linked_request(db, user.establishment_id, req)
        choice = await routing.route(db, user.establishment_id, now)
        exam, event = await create_exam(
            db, app.settings, user, req, now, choice.radiologist_id, identity_id=identity
        )
        await record_request(request, "exam.request", principal, db, exam_id=exam.id)
        await db.commit()
        await db.refresh(exam)
        body = exam_json(exam, app.settings, principal.role)
    await publish_events(app, exam, [event])
    await routing.announce(app, exam, choice)
    return exam, body


async def list_exams(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    stmt = select(Exam).where(exam_scope(principal))
    status = request.query_params.getlist("status")
    for s in status:
        if s not in set(ExamStatus):
            raise ApiError(400, "bad_parameter", f"unknown status {s!r}")
    if status:
        stmt = stmt.where(Exam.status.in_(status))
    code = request.query_params.get("establishment")
    if code:
        stmt = stmt.join(Establishment, Establishment.id == Exam.establishment_id).where(
            Establishment.code == code
        )
    limit = _int_param(request, "limit", 200, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    # An open stroke alert comes first in every worklist (docs/stroke.md).
    open_stroke = case(
        (and_(Exam.stroke_onset_kind.is_not(None), Exam.status.not_in(CLOSED)), 0), else_=1
    )
    stmt = stmt.order_by(open_stroke, Exam.created_at.desc()).limit(limit).offset(offset)
    async with app.db() as db:
        exams = (await db.scalars(stmt)).unique().all()
        items = [exam_json(e, app.settings, principal.role) for e in exams]
        await record_request(
            request, "exam.list", principal, db, detail={"count": len(items), "status": status}
        )
        await db.commit()
    return JSONResponse({"exams": items})


async def get_exam(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        body = exam_json(exam, app.settings, principal.role)
        await record_request(request, "exam.read", principal, db, exam_id=exam.id)
        await db.commit()
        return JSONResponse(body)


async def list_events(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    since = _int_param(request, "since", 0, 0, 2**31)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        rows = (
            await db.execute(
                select(ExamEvent, User)
                .outerjoin(User, User.id == ExamEvent.author_id)
                .where(ExamEvent.exam_id == exam.id, ExamEvent.seq > since)
                .order_by(ExamEvent.seq)
            )
        ).all()
        role = Role(principal.role)
        events = [
            event_json(ev, author) for ev, author in rows if visible(EventKind(ev.kind), role)
        ]
        await record_request(
            request, "exam.events.read", principal, db, exam_id=exam.id, detail={"since": since}
        )
        await db.commit()
    return JSONResponse({"events": events, "last_seq": exam.last_seq})


async def get_first_image(request: Request) -> Response:
    """The slice the room's viewer shows first, for the page to ask the archive for it
    rendered before anything else (docs/api.md "The first image of a room")."""
    principal = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        role = Role(principal.role)
        found = await first_image(db, exam.id) if visible(EventKind.IMAGES_RECEIVED, role) else None
    if found is None:
        raise ApiError(404, "no_images", "no image of this exam is in the archive yet")
    return JSONResponse(found)


routes = [
    Route("/exams", request_exam, methods=["POST"]),
    Route("/exams", list_exams, methods=["GET"]),
    Route("/exams/{exam_id}", get_exam, methods=["GET"]),
    Route("/exams/{exam_id}/events", list_events, methods=["GET"]),
    Route("/exams/{exam_id}/first-image", get_first_image, methods=["GET"]),
]
