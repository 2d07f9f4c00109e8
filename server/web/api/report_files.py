"""The signed report in its three formats: ``report.pdf``, ``report.fhir.json``,
``report.dcm`` (docs/reports.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.core.errors import ApiError
from server.exams.authz import load_exam
from server.reports.delivery import load_addenda, load_report, rendered
from server.web.request import authenticate, ctx, record_request


def _format_route(fmt: str) -> Any:
    async def endpoint(request: Request) -> Response:
        who = await authenticate(request)
        app = ctx(request)
        async with app.db() as db:
            exam = await load_exam(db, who, request.path_params["exam_id"])
            report = await load_report(db, exam.id)
            if report is None or report.signed_at is None:
                raise ApiError(404, "report_not_signed", "this exam has no signed report yet")
            addenda = await load_addenda(db, exam.id)
            await record_request(
                request,
                "report.read",
                who,
                db,
                exam_id=exam.id,
                study_uid=exam.study_instance_uid,
                detail={"format": fmt},
            )
            await db.commit()
        # CPU-bound (fpdf2): off the event loop.
        pdf, fhir, part10 = await asyncio.to_thread(rendered, report, addenda)
        headers = {"X-Report-SHA256": report.sha256 or ""}
        if fmt == "pdf":
            name = f"report-{exam.accession_number}.pdf"
            headers["Content-Disposition"] = f'inline; filename="{name}"'
            return Response(pdf, media_type="application/pdf", headers=headers)
        if fmt == "fhir":
            return Response(
                json.dumps(fhir, sort_keys=True, ensure_ascii=False).encode(),
                media_type="application/fhir+json",
                headers=headers,
            )
        return Response(part10, media_type="application/dicom", headers=headers)

    endpoint.__name__ = f"report_{fmt}"
    return endpoint


routes = [
    Route("/exams/{exam_id}/report.pdf", _format_route("pdf"), methods=["GET"]),
    Route("/exams/{exam_id}/report.fhir.json", _format_route("fhir"), methods=["GET"]),
    Route("/exams/{exam_id}/report.dcm", _format_route("dicom"), methods=["GET"]),
]
