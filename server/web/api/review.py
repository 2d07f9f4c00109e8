"""Peer review: ``/api/reviews`` and ``/api/review-figures`` (docs/api.md "Peer review",
docs/review.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.channels import notify
from server.core.errors import ApiError, conflict
from server.core.models import Exam, User
from server.exams.authz import require_role
from server.reports.delivery import load_report
from server.review.models import PeerReview
from server.review.policy import RADPEER_SCORES, ReviewScore, figures
from server.review.service import review_json
from server.web.http import parse
from server.web.request import authenticate, ctx, record_request

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such review")


async def list_reviews(request: Request) -> Response:
    """A radiologist's reviews to do and done; a coordinator's: every one, the
    unassigned first."""
    who = await authenticate(request)
    require_role(who, Role.RADIOLOGIST, Role.COORDINATOR)
    async with ctx(request).db() as db:
        query = select(PeerReview).order_by(PeerReview.reviewer_id.is_not(None), PeerReview.id)
        if who.role == Role.RADIOLOGIST:
            query = query.where(PeerReview.reviewer_id == who.user.id)
        rows = list(await db.scalars(query))
    return JSONResponse({"reviews": [review_json(r) for r in rows]})


async def get_review(request: Request) -> Response:
    """The review with the exam and its signed report, read-only: its reviewer and the
    coordinators only."""
    who = await authenticate(request)
    require_role(who, Role.RADIOLOGIST, Role.COORDINATOR)
    async with ctx(request).db() as db:
        review = await db.get(PeerReview, request.path_params["review_id"])
        if review is None or (who.role == Role.RADIOLOGIST and review.reviewer_id != who.user.id):
            raise _not_found()
        exam = await db.get_one(Exam, review.exam_id)
        report = await load_report(db, exam.id)
        await record_request(request, "review.read", who, db, exam_id=exam.id)
        await db.commit()
    return JSONResponse(
        {
            **review_json(review),
            "exam": {
                "id": exam.id,
                "modality": exam.modality,
                "body_part": exam.body_part,
                "study_instance_uid": exam.study_instance_uid,
            },
            "report": None
            if report is None
            else {
                "indication": report.indication,
                "technique": report.technique,
                "findings": report.findings,
                "conclusion": report.conclusion,
                "signed_at": report.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                if report.signed_at
                else None,
            },
        }
    )


async def score_review(request: Request) -> Response:
    """The reviewer scores once; a significant discrepancy notifies the author and the
    coordinators."""
    who = await authenticate(request)
    require_role(who, Role.RADIOLOGIST)
    body = await parse(request, ReviewScore)
    app = ctx(request)
    now = datetime.now(UTC)
    async with app.db() as db:
        review = await db.get(PeerReview, request.path_params["review_id"])
        if review is None or review.reviewer_id != who.user.id:
            raise _not_found()
        if review.score is not None:
            raise conflict("this review is scored already", "review_scored")
        review.score, review.comment, review.scored_at = body.score, body.comment or None, now
        await record_request(
            request,
            "review.score",
            who,
            db,
            exam_id=review.exam_id,
            detail={"review": review.id, "score": body.score},
        )
        await db.commit()
        out = review_json(review)
    if body.significant:
        await notify(
            app,
            "review.discrepancy",
            {"id": review.exam_id},
            {"review": review.id, "score": body.score, "comment": body.comment},
            users=[review.author_id],
            roles=[Role.COORDINATOR.value],
        )
    return JSONResponse(out)


async def review_figures(request: Request) -> Response:
    """``?month=YYYY-MM&radiologist=ID``: that radiologist's counts per score over the
    reviews scored that month (UTC); the radiologist and the coordinators only."""
    who = await authenticate(request)
    month = MONTH.match(request.query_params.get("month", ""))
    try:
        author = int(request.query_params.get("radiologist", ""))
    except ValueError:
        author = -1
    if month is None or author < 0:
        raise ApiError(
            422,
            "invalid_fields",
            "month (YYYY-MM) and radiologist (a user id) are required",
            fields=[{"field": "month", "message": "YYYY-MM"}],
        )
    if not (
        who.role == Role.COORDINATOR or (who.role == Role.RADIOLOGIST and who.user.id == author)
    ):
        raise ApiError(403, "forbidden", "only that radiologist and the coordinators see these")
    year, mon = int(month[1]), int(month[2])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    async with ctx(request).db() as db:
        if await db.get(User, author) is None:
            raise ApiError(404, "not_found", "no such radiologist")
        rows = await db.execute(
            select(PeerReview.author_id, PeerReview.score).where(
                PeerReview.author_id == author,
                PeerReview.score.is_not(None),
                PeerReview.scored_at >= start,
                PeerReview.scored_at < end,
            )
        )
        counts = figures((a, s) for a, s in rows if s is not None)
    empty = {**dict.fromkeys(RADPEER_SCORES, 0), "total": 0}
    return JSONResponse(
        {"month": month[0], "radiologist": author, "scores": counts.get(author, empty)}
    )


routes = [
    Route("/reviews", list_reviews, methods=["GET"]),
    Route("/reviews/{review_id:int}", get_review, methods=["GET"]),
    Route("/reviews/{review_id:int}/score", score_review, methods=["POST"]),
    Route("/review-figures", review_figures, methods=["GET"]),
]
