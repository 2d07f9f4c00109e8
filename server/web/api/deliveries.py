"""Deliveries of reports to the hospitals' systems (docs/api.md "Deliveries",
docs/hl7.md "Outbound"): their state per exam, the coordinators' list of those not
acknowledged, and the resend button's route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError
from server.exams.authz import load_exam, require_role
from server.interfaces import outbox
from server.web.request import authenticate, ctx, record_request


async def exam_deliveries(request: Request) -> Response:
    """Every message owed for one exam and its state, for whoever may see the exam."""
    who = await authenticate(request)
    app = ctx(request)
    async with app.read() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        items = await outbox.deliveries(db, exam_id=exam.id)
    return JSONResponse({"deliveries": items})


async def open_deliveries(request: Request) -> Response:
    """Coordinators: the deliveries not acknowledged yet (pending, retrying, failed)."""
    who = await authenticate(request)
    require_role(who, Role.COORDINATOR, Role.ADMIN)
    app = ctx(request)
    async with app.read() as db:
        items = await outbox.deliveries(db, open_only=True)
    return JSONResponse({"deliveries": items})


async def resend(request: Request) -> Response:
    """Coordinators: send a failed or waiting delivery again now, same control id."""
    who = await authenticate(request)
    require_role(who, Role.COORDINATOR)
    raw = request.path_params["delivery_id"]
    if not raw.isdigit():
        raise ApiError(404, "not_found", "no such delivery")
    app = ctx(request)
    async with app.db() as db:
        row = await outbox.resend(db, int(raw), app.now(), app.settings)
        await record_request(
            request,
            "hl7.resend",
            who,
            db,
            exam_id=row.exam_id,
            detail={"delivery": row.id, "control_id": row.control_id},
        )
        await db.commit()
        item = outbox.delivery_json(row)
    await outbox.announce(app, row.exam_id)
    return JSONResponse(item)


routes = [
    Route("/exams/{exam_id}/deliveries", exam_deliveries, methods=["GET"]),
    Route("/deliveries", open_deliveries, methods=["GET"]),
    Route("/deliveries/{delivery_id}/resend", resend, methods=["POST"]),
]
