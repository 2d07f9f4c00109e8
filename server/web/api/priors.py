"""The priors of an exam: ``GET /api/exams/{exam_id}/priors`` (docs/api.md "Priors")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.exams.authz import load_exam
from server.priors.service import prior_json, priors_of
from server.web.request import authenticate, ctx, record_request


async def list_priors(request: Request) -> Response:
    principal = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        priors = await priors_of(db, principal, exam)
        await record_request(
            request,
            "exam.priors.read",
            principal,
            db,
            exam_id=exam.id,
            detail={"priors": [p.id for p in priors]},
        )
        await db.commit()
    return JSONResponse({"priors": [prior_json(p) for p in priors]})


routes = [Route("/exams/{exam_id}/priors", list_priors, methods=["GET"])]
