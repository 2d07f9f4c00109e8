"""The exam's record (``GET /api/exams/{id}/record.pdf``) and the monthly site
report (``GET /api/stats/monthly``, ``.pdf``, ``/charts/{name}.png``)
(docs/accountability.md)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rooms.types import Role
from server.accountability import record
from server.exams.authz import load_exam, require_role
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


routes = [
    Route("/exams/{exam_id}/record.pdf", exam_record, methods=["GET"]),
]
