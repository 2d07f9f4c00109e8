"""The exam's record (``GET /api/exams/{id}/record.pdf``) and the monthly site
report (``GET /api/stats/monthly``, ``.pdf``, ``/charts/{name}.png``)
(docs/accountability.md)."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.accountability import charts, monthly, monthly_pdf, record
from server.core.errors import ApiError
from server.core.models import Establishment
from server.exams.authz import load_exam, require_role
from server.exams.service import escalation_policy
from server.web.request import authenticate, ctx, record_request

RECORD_ROLES = (Role.URGENTIST, Role.MANIPULATOR, Role.COORDINATOR)


async def exam_record(request: Request) -> Response:
    """The requesting establishment's staff who may see the exam, and coordinators;
    another establishment's users get the 404 of every exam route."""
    who = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        require_role(who, *RECORD_ROLES)
        gathered = await record.gather(db, exam)
        facts = record.content(gathered, app.now())
        # CPU-bound (fpdf2): off the event loop, inside the transaction so the
        # audit row and the document describe the same state.
        pdf = await asyncio.to_thread(record.render, facts)
        digest = record.sha256(pdf)
        await record_request(
            request,
            "record.generated",
            who,
            db,
            exam_id=exam.id,
            study_uid=exam.study_instance_uid,
            detail={"sha256": digest, "bytes": len(pdf), "events": len(facts["events"])},
        )
        await db.commit()
    name = f"record-{exam.accession_number}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"X-Record-SHA256": digest, "Content-Disposition": f'inline; filename="{name}"'},
    )


async def _monthly(request: Request) -> dict[str, Any]:
    """Coordinators only: the month's report of one establishment, audited."""
    who = await authenticate(request)
    require_role(who, Role.COORDINATOR)
    q = request.query_params
    month = q.get("month", "")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ApiError(400, "bad_parameter", "month must be given as YYYY-MM")
    code = q.get("establishment", "").strip().upper()
    if not code:
        raise ApiError(400, "bad_parameter", "establishment is required")
    app = ctx(request)
    async with app.db() as db:
        est = await db.scalar(select(Establishment).where(Establishment.code == code))
        if est is None:
            raise ApiError(400, "bad_parameter", f"unknown establishment {code!r}")
        doc = await monthly.monthly_report(
            db, est, month, escalation_policy(app.settings), app.now()
        )
        await record_request(
            request, "monthly.read", who, db, detail={"month": month, "establishment": code}
        )
        await db.commit()
    return doc


def _with_charts(doc: dict[str, Any]) -> dict[str, Any]:
    """The report with its charts as PNG data URIs: what the page shows, in one
    request and one computation of the figures."""
    return {
        **doc,
        "charts": {
            name: "data:image/png;base64,"
            + base64.b64encode(charts.render(name, doc["figures"])).decode()
            for name in charts.CHARTS
        },
    }


async def monthly_json(request: Request) -> Response:
    """``?charts=png`` adds ``charts``: each chart as a PNG data URI."""
    charts_param = request.query_params.get("charts")
    if charts_param not in (None, "png"):
        raise ApiError(400, "bad_parameter", "charts must be png")
    doc = await _monthly(request)
    if charts_param == "png":
        doc = await asyncio.to_thread(_with_charts, doc)
    return JSONResponse(doc)


async def monthly_pdf_route(request: Request) -> Response:
    doc = await _monthly(request)
    pdf = await asyncio.to_thread(monthly_pdf.render, doc, ctx(request).now())
    name = f"monthly-{doc['establishment']['code']}-{doc['month']}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


async def monthly_chart(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in charts.CHARTS:
        raise ApiError(404, "not_found", f"no chart {name!r}")
    doc = await _monthly(request)
    png = await asyncio.to_thread(charts.render, name, doc["figures"])
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


routes = [
    Route("/exams/{exam_id}/record.pdf", exam_record, methods=["GET"]),
    Route("/stats/monthly", monthly_json, methods=["GET"]),
    Route("/stats/monthly.pdf", monthly_pdf_route, methods=["GET"]),
    Route("/stats/monthly/charts/{name}.png", monthly_chart, methods=["GET"]),
]
