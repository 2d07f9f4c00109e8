"""``/api/reconciliation``: the queue of instances kept aside (docs/dicomweb.md
"Filing and reconciliation"; the rules are in server/archive/reconciliation.py).

- ``GET /api/reconciliation[?status=pending|filed|discarded]``: the caller's
  queue, grouped by series (newest first).
- ``POST /api/reconciliation/{id}/file`` ``{"exam_id"}``: file the item's series
  group into an exam of its establishment.
- ``POST /api/reconciliation/{id}/discard`` ``{"reason"}``: discard the group.

An item the caller may not see answers 404, whether it exists or not.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.archive import reconciliation as queue
from server.core.errors import ApiError
from server.core.models import Exam, ReconciliationItem, User
from server.web.http import parse
from server.web.request import archive_ctx, authenticate, ctx


class FileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exam_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=36)]


class DiscardBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _group_json(
    items: list[ReconciliationItem], exams: dict[str, Exam], users: dict[int, User]
) -> dict[str, Any]:
    first = items[0]
    candidate = exams.get(first.candidate_exam_id or "")
    uploader = users.get(first.uploader_id or 0)
    return {
        "id": first.id,
        "status": first.status,
        "establishment_id": first.establishment_id,
        "series_uid": first.series_uid,
        "modality": first.modality,
        "count": len(items),
        "reason": first.reason,
        "message": first.message,
        "received_at": _iso(first.received_at),
        "last_received_at": _iso(items[-1].received_at),
        "source": first.source,
        "uploader": {"id": uploader.id, "display_name": uploader.display_name}
        if uploader
        else None,
        "seen": {
            "study_uid": first.study_uid,
            "accession_number": first.accession_number,
            "patient_id": first.patient_id,
            "patient_name": first.patient_name,
            "patient_birth_date": first.patient_birth_date,
            "patient_sex": first.patient_sex,
        },
        "candidate_exam": {
            "id": candidate.id,
            "accession_number": candidate.accession_number,
            "patient_name": candidate.patient_name,
            "status": candidate.status,
        }
        if candidate
        else None,
        "resolved_at": _iso(first.resolved_at),
        "filed_exam_id": first.filed_exam_id,
        "items": [{"id": i.id, "sop_uid": i.sop_uid} for i in items],
    }


async def list_items(request: Request) -> Response:
    principal = await authenticate(request)
    status = request.query_params.get("status", queue.PENDING)
    if status not in (queue.PENDING, queue.FILED, queue.DISCARDED):
        raise ApiError(400, "bad_status", "status is pending, filed or discarded")
    app = ctx(request)
    async with app.read() as db:
        rows = list(
            (
                await db.scalars(
                    select(ReconciliationItem)
                    .where(queue.visible(principal), ReconciliationItem.status == status)
                    .order_by(ReconciliationItem.received_at.desc(), ReconciliationItem.id)
                    .limit(5000)
                )
            ).all()
        )
        groups: dict[tuple[int | None, str], list[ReconciliationItem]] = {}
        for row in reversed(rows):
            groups.setdefault((row.establishment_id, row.series_uid), []).append(row)
        candidates = {r.candidate_exam_id for r in rows if r.candidate_exam_id}
        exam_query = select(Exam).where(Exam.id.in_(candidates))
        if principal.role == Role.MANIPULATOR:  # never another site's exam
            exam_query = exam_query.where(Exam.establishment_id == principal.establishment_id)
        exams = {e.id: e for e in (await db.scalars(exam_query)).unique().all()}
        uploader_ids = {r.uploader_id for r in rows if r.uploader_id}
        users = {u.id: u for u in await db.scalars(select(User).where(User.id.in_(uploader_ids)))}
    body = [_group_json(items, exams, users) for items in groups.values()]
    body.sort(key=lambda g: g["last_received_at"] or "", reverse=True)
    return JSONResponse({"groups": body})


async def file_item(request: Request) -> Response:
    principal = await authenticate(request)
    body = await parse(request, FileBody)
    app = archive_ctx(request)
    async with app.read() as db:
        items = await queue.load_group(db, principal, request.path_params["item_id"])
        exam = await queue.target_exam(db, principal, items[0].establishment_id, body.exam_id)
    outcome = await queue.file_group(app, principal, items, exam)
    if not outcome["filed"]:
        why = outcome["failed"][0]["message"]
        raise ApiError(409, "not_filed", f"nothing could be filed: {why}")
    return JSONResponse(outcome)


async def discard_item(request: Request) -> Response:
    principal = await authenticate(request)
    body = await parse(request, DiscardBody)
    app = ctx(request)
    async with app.read() as db:
        items = await queue.load_group(db, principal, request.path_params["item_id"])
    return JSONResponse(await queue.discard_group(app, principal, items, body.reason))


routes = [
    Route("/reconciliation", list_items, methods=["GET"]),
    Route("/reconciliation/{item_id}/file", file_item, methods=["POST"]),
    Route("/reconciliation/{item_id}/discard", discard_item, methods=["POST"]),
]
