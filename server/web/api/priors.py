"""The priors of an exam: ``GET /api/exams/{exam_id}/priors`` (docs/api.md "Priors")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.exams.authz import load_exam
from server.priors.models import PriorFetch
from server.priors.service import (
    hospital_prior_json,
    hospital_priors_of,
    prior_json,
    priors_of,
)
from server.web.request import authenticate, ctx, record_request


async def list_priors(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        priors = await priors_of(db, principal, exam)
        hospital = await hospital_priors_of(db, exam)
        fetch = await db.get(PriorFetch, exam.id)
        await record_request(
            request,
            "exam.priors.read",
            principal,
            db,
            exam_id=exam.id,
            detail={
                "priors": [p.id for p in priors],
                "hospital": [h.study_instance_uid for h in hospital],
            },
        )
        await db.commit()
    listed = [prior_json(p) for p in priors] + [hospital_prior_json(h) for h in hospital]
    # Newest first, whichever archive they come from (a stable sort keeps each one's order).
    listed.sort(key=lambda p: p["requested_at"] or "", reverse=True)
    pacs = None
    if fetch is not None:
        pacs = {"status": fetch.status, "reason": fetch.reason, "message": fetch.message}
    return JSONResponse({"priors": listed, "pacs": pacs})


routes = [Route("/exams/{exam_id}/priors", list_priors, methods=["GET"])]
