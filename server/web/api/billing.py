"""``GET /api/billing/statement``: the month's acts, JSON or CSV (coordinators)."""

from __future__ import annotations

import re

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError
from server.core.models import Establishment, User
from server.exams.authz import require_role
from server.reports import billing
from server.web.request import authenticate, ctx, record_request


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message)


async def get_statement(request: Request) -> Response:
    who = await authenticate(request)
    require_role(who, Role.COORDINATOR)
    q = request.query_params
    month = q.get("month", "")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise _bad("month must be given as YYYY-MM")
    app = ctx(request)
    async with app.db() as db:
        est = None
        if q.get("establishment"):
            code = q["establishment"].strip().upper()
            est = await db.scalar(select(Establishment).where(Establishment.code == code))
            if est is None:
                raise _bad(f"unknown establishment {code!r}")
        rad_id = None
        if q.get("radiologist"):
            raw = q["radiologist"]
            rad = await db.scalar(
                select(User).where(
                    User.id == int(raw) if raw.isdigit() else User.username == raw,
                    User.role == Role.RADIOLOGIST,
                )
            )
            if rad is None:
                raise _bad(f"unknown radiologist {raw!r}")
            rad_id = rad.id
        doc = await billing.statement(db, month, est, rad_id)
        await record_request(
            request,
            "billing.read",
            who,
            db,
            detail={"month": month, "establishment": doc["establishment"], "radiologist": rad_id},
        )
        await db.commit()
    if "text/csv" in request.headers.get("accept", ""):
        name = (
            f"statement-{month}"
            + (f"-{doc['establishment']}" if est else "")
            + (f"-rad{rad_id}" if rad_id else "")
        )
        return Response(
            billing.statement_csv(doc),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return JSONResponse(doc)


routes = [Route("/billing/statement", get_statement, methods=["GET"])]
