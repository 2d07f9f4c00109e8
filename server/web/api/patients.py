"""The identities received from the hospitals and the orders waiting as drafts:
``/api/patients``, ``/api/exam-drafts`` (docs/api.md "Patients and drafts").

Site staff only, and only their establishment's: an identity is patient data of
one hospital (docs/patients.md).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError, not_found
from server.core.identity import Principal
from server.core.models import PatientIdentity, User
from server.exams import routing
from server.exams.authz import require_role
from server.exams.publish import publish_events
from server.exams.service import ExamRequest, create_exam, exam_json
from server.interfaces.drafts import OrderDraft, draft_json, pending
from server.patients import service as patients
from server.web.http import parse
from server.web.request import authenticate, ctx, record_request


def _site(principal: Principal) -> int:
    require_role(principal, Role.URGENTIST, Role.MANIPULATOR)
    if principal.establishment_id is None:
        raise ApiError(403, "forbidden", "no establishment")
    return principal.establishment_id


async def search_patients(request: Request) -> Response:
    principal = await authenticate(request)
    establishment = _site(principal)
    q = (request.query_params.get("q") or "").strip()
    raw_birth = request.query_params.get("birth_date")
    birth = None
    if raw_birth:
        try:
            birth = date.fromisoformat(raw_birth)
        except ValueError:
            raise ApiError(400, "bad_parameter", "birth_date is YYYY-MM-DD") from None
    if len(q) < 2 and birth is None:
        raise ApiError(400, "bad_parameter", "give q (2 characters or more) or birth_date")
    if len(q) > 100:
        raise ApiError(400, "bad_parameter", "q is at most 100 characters")
    app = ctx(request)
    async with app.db() as db:
        rows = await patients.search(db, establishment, q=q, birth_date=birth)
        items = [patients.identity_json(r) for r in rows]
        await record_request(request, "patient.search", principal, db, detail={"count": len(items)})
        await db.commit()
    return JSONResponse({"patients": items})


async def list_drafts(request: Request) -> Response:
    principal = await authenticate(request)
    establishment = _site(principal)
    app = ctx(request)
    async with app.db() as db:
        rows = await pending(db, establishment)
        items = [draft_json(d, i, patients.identity_json(i)) for d, i in rows]
        await record_request(
            request, "order.draft.list", principal, db, detail={"count": len(items)}
        )
        await db.commit()
    return JSONResponse({"drafts": items})


async def complete_draft(request: Request) -> Response:
    """The urgentist completes an order received without everything a request needs;
    the exam is requested as the form requests it, for the draft's identity, keeping
    the order's placer number."""
    principal = await authenticate(request)
    require_role(principal, Role.URGENTIST)
    req = await parse(request, ExamRequest)
    app = ctx(request)
    now = app.now()
    async with app.db() as db:
        user = await db.get_one(User, principal.user.id)
        assert user.establishment_id is not None
        draft = await db.scalar(
            select(OrderDraft).where(
                OrderDraft.id == request.path_params["draft_id"],
                OrderDraft.establishment_id == user.establishment_id,
            )
        )
        if draft is None:
            raise not_found()
        if draft.status != "pending":
            raise ApiError(409, "wrong_state", f"this order is {draft.status} already")
        identity = await db.get_one(PatientIdentity, draft.patient_identity_id)
        identity = await patients.surviving(db, identity)
        patient = req.patient.model_copy(
            update={
                "id": identity.ipp,
                "name": patients.dicom_name(identity)[:200],
                "birth_date": identity.birth_date,
                "sex": identity.sex,
                "identity_id": identity.id,
            }
        )
        req = req.model_copy(update={"patient": patient})
        choice = await routing.route(db, user.establishment_id, now)
        exam, event = await create_exam(
            db,
            app.settings,
            user,
            req,
            now,
            choice.radiologist_id,
            identity_id=identity.id,
            placer_order_number=draft.placer_order_number,
        )
        # Guarded: of two urgentists completing the same draft, one requests the exam.
        taken = await db.execute(
            update(OrderDraft)
            .where(OrderDraft.id == draft.id, OrderDraft.status == "pending")
            .values(status="requested", exam_id=exam.id, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            await db.rollback()
            raise ApiError(409, "wrong_state", "this order was completed meanwhile")
        await record_request(
            request,
            "exam.request",
            principal,
            db,
            exam_id=exam.id,
            detail={"draft": draft.id, "placer": draft.placer_order_number},
        )
        await db.commit()
        await db.refresh(exam)
        body = exam_json(exam, app.settings, principal.role)
    await publish_events(app, exam, [event])
    await routing.announce(app, exam, choice)
    return JSONResponse(body, status_code=201, headers={"Location": f"/api/exams/{exam.id}"})


routes = [
    Route("/patients", search_patients, methods=["GET"]),
    Route("/exam-drafts", list_drafts, methods=["GET"]),
    Route("/exam-drafts/{draft_id}", complete_draft, methods=["POST"]),
]
