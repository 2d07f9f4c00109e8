"""The critical-result record: ``/api/exams/{id}/critical-result`` (docs/api.md "Reports",
docs/stroke.md "The critical-result record")."""

from __future__ import annotations

from sqlalchemy import update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import EventKind, ExamStatus, Role
from server.core.errors import ApiError, conflict
from server.exams.authz import load_exam, require_role
from server.exams.publish import publish_events
from server.exams.service import append_event
from server.reports.critical import CLOCK_SKEW, CriticalResult, PhoneCall, record_json
from server.web.http import parse
from server.web.request import authenticate, ctx, record_request


async def get_record(request: Request) -> Response:
    who = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        row = await db.get(CriticalResult, exam.id)
        await record_request(request, "critical_result.read", who, db, exam_id=exam.id)
        await db.commit()
    if row is None:
        raise ApiError(404, "no_critical_result", "this exam has no critical finding recorded")
    return JSONResponse(record_json(row))


async def log_call(request: Request) -> Response:
    """The radiologist logs the phone call that passed on the critical finding, with
    the read-back: the record is complete and the critical escalation stops."""
    who = await authenticate(request)
    require_role(who, Role.RADIOLOGIST)
    call = await parse(request, PhoneCall)
    if not call.read_back:
        raise ApiError(
            422,
            "invalid_fields",
            "the recipient must read the finding back",
            fields=[{"field": "read_back", "message": "must be true"}],
        )
    app = ctx(request)
    now = app.now()
    async with app.db() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        if exam.assigned_radiologist_id != who.user.id:
            raise ApiError(403, "forbidden", "only the exam's radiologist logs its calls")
        row = await db.get(CriticalResult, exam.id)
        if row is None:
            raise conflict("the report has no critical finding", "no_critical_result")
        if row.received_at is not None:
            raise conflict("the critical result was already received", "critical_result_complete")
        if not row.identified_at <= call.received_at <= now + CLOCK_SKEW:
            raise ApiError(
                422,
                "invalid_fields",
                "the call must be between the finding and now",
                fields=[{"field": "received_at", "message": "before the finding or in the future"}],
            )
        done = await db.execute(
            update(CriticalResult)
            .where(CriticalResult.exam_id == exam.id, CriticalResult.received_at.is_(None))
            .values(
                recipient_name=call.recipient_name,
                recipient_role=call.recipient_role,
                received_at=call.received_at,
                method="phone",
                read_back=True,
            )
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise conflict("the critical result was already received", "critical_result_complete")
        body = {
            "method": "phone",
            "recipient_name": call.recipient_name,
            "recipient_role": call.recipient_role,
            "received_at": call.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "read_back": True,
        }
        event = await append_event(
            db,
            exam.id,
            EventKind.CRITICAL_COMMUNICATED,
            who.user.id,
            body,
            now,
            from_status=(ExamStatus.REPORTED, ExamStatus.DELIVERED),
        )
        await record_request(request, "critical_result.call", who, db, exam_id=exam.id)
        await db.commit()
        await db.refresh(row)
        out = record_json(row)
    await publish_events(app, exam, [event])  # re-plans the timers: the escalation stops
    return JSONResponse(out)


routes = [
    Route("/exams/{exam_id}/critical-result", get_record, methods=["GET"]),
    Route("/exams/{exam_id}/critical-result/call", log_call, methods=["POST"]),
]
