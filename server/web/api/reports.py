"""Report routes: templates, draft, signature, addenda, acknowledgement.

The state changes go through ``server.exams.commands.execute`` (lifecycle
check, event, audit row, one transaction). Signing and addenda ask for the
password again; the Argon2 check runs before the transaction so that no write
lock is held while it computes, and the exam is checked first so that a caller
learns nothing about an exam outside their scope.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.lifecycle import Command, LifecycleError, decide
from rooms.types import ExamStatus, Role
from server.core.errors import ApiError, conflict
from server.core.identity import Principal
from server.core.models import Exam, ExamEvent, User
from server.exams.authz import load_exam
from server.exams.commands import AsyncEffect, Changes, execute, lifecycle_error
from server.interfaces import outbox
from server.reports import billing, stroke
from server.reports.critical import CriticalResult
from server.reports.delivery import archive_latest, load_addenda, load_report
from server.reports.dose import fill_dose_line, radiation_dose
from server.reports.service import (
    AcknowledgeBody,
    Addendum,
    AddendumBody,
    DraftBody,
    Report,
    SignBody,
    addendum_content,
    canonical_bytes,
    draft_from_template,
    find_templates,
    missing_for_signature,
    person,
    report_fields,
    sha256_hex,
    signed_content,
    ts,
)
from server.review.service import open_review
from server.web.api import report_files
from server.web.http import parse
from server.web.request import archive_ctx, authenticate, client_addr, ctx, record_request

log = logging.getLogger("teleimagerie.reports")
READERS_OF_DRAFTS = frozenset({Role.RADIOLOGIST, Role.COORDINATOR})


async def _check_password(request: Request, who: Principal, password: str, action: str) -> None:
    """Re-authenticate a signature; refusals are audited and count like failed logins."""
    app = ctx(request)
    exam_id = request.path_params["exam_id"]
    async with app.db() as db:  # scope and state first: no password oracle outside them
        exam = await load_exam(db, who, exam_id)
        command = Command.REPORT_SIGN if action == "report.sign" else Command.ADDENDUM
        try:
            decide(ExamStatus(exam.status), command, Role(who.role))
        except LifecycleError as exc:
            raise lifecycle_error(exc) from None
        stored = (await db.get_one(User, who.user.id)).password_hash
    key = f"sign:user:{who.user.id}"
    if await app.bus.peek(key) >= app.settings.login_max_failures_user:
        await record_request(
            request,
            action,
            who,
            outcome="denied",
            exam_id=exam_id,
            detail={"reason": "too many wrong passwords"},
        )
        raise ApiError(
            429,
            "too_many_attempts",
            "too many wrong passwords; try again later",
            headers={"Retry-After": str(app.settings.login_window_s)},
        )
    if not await app.passwords.verify_async(stored, password):
        await app.bus.hit(key, app.settings.login_window_s)
        await record_request(
            request,
            action,
            who,
            outcome="denied",
            exam_id=exam_id,
            detail={"reason": "wrong password"},
        )
        raise ApiError(403, "wrong_password", "the password is not correct; nothing was signed")
    await app.bus.reset(key)


async def _execute(
    request: Request, who: Principal, command: Command, effect: AsyncEffect
) -> tuple[Exam, ExamEvent, dict[str, Any]]:
    """``server.exams.commands.execute`` on the request's exam, audited with its address."""
    exam_id = request.path_params["exam_id"]
    return await execute(ctx(request), who, exam_id, command, effect, addr=client_addr(request))


def _report_json(
    report: Report, addenda: list[Addendum], dose: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A draft shows the scanner's ``radiation_dose`` as it is now (its line fills a
    dose line left blank or with a placeholder); a signed report, what was sealed."""
    if report.signed_at is None:
        fields = report_fields(report)
        fields["dose"] = fill_dose_line(fields["dose"], dose)
        return {
            "status": "draft",
            "template_id": report.template_id,
            **fields,
            "radiation_dose": dose,
            # The line shown is not the one stored: the editor saves it.
            "dose_filled": fields["dose"] != report.dose,
            "updated_at": ts(report.updated_at),
        }
    content = json.loads(report.canonical or "{}")
    return {
        "status": "signed",
        **content["report"],
        "radiation_dose": content.get("radiation_dose"),
        "sha256": report.sha256,
        "signer": content["signer"],
        "signed_at": content["signed_at"],
        "addenda": [
            {
                "number": a.number,
                "text": a.text,
                "sha256": a.sha256,
                "signed_at": ts(a.signed_at),
                "signer": json.loads(a.canonical)["signer"],
            }
            for a in addenda
        ],
        "acknowledged_at": ts(report.acknowledged_at) if report.acknowledged_at else None,
        "acknowledged_by": report.acknowledged_by_id,
        "critical_acknowledged": report.critical_acknowledged,
        "archived_at": ts(report.archived_at) if report.archived_at else None,
    }


async def _optional_body(request: Request, model: type[AcknowledgeBody]) -> AcknowledgeBody:
    """An empty body means the defaults; otherwise the usual JSON rules."""
    declared = request.headers.get("content-length")
    if declared == "0" or (declared is None and "transfer-encoding" not in request.headers):
        return model()
    return await parse(request, model)


async def get_templates(request: Request) -> Response:
    await authenticate(request)
    q = request.query_params
    return JSONResponse({"templates": find_templates(q.get("modality"), q.get("body_part"))})


async def get_report(request: Request) -> Response:
    """The report as the caller may see it: site staff only learn a draft exists."""
    who = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        report = await load_report(db, exam.id)
        addenda = await load_addenda(db, exam.id)
        await record_request(request, "report.read", who, db, exam_id=exam.id)
        await db.commit()
    drafts_ok = who.role in READERS_OF_DRAFTS
    dose = radiation_dose(exam, app.settings.drl_file)
    if report is None:
        body: dict[str, Any] = {"status": "none"}
        if drafts_ok:
            template = draft_from_template(exam)
            template["dose"] = fill_dose_line(template["dose"], dose)
            body["template"] = template
            body["radiation_dose"] = dose
    elif report.signed_at is None and not drafts_ok:
        body = {"status": "draft", "in_progress": True, "updated_at": ts(report.updated_at)}
    else:
        body = _report_json(report, addenda, dose)
    return JSONResponse(body)


async def put_draft(request: Request) -> Response:
    who = await authenticate(request)
    draft = (await parse(request, DraftBody)).with_stroke_text()
    fields = draft.model_dump()

    async def effect(db: AsyncSession, exam: Exam, _w: Principal, now: datetime) -> Changes:
        report = await load_report(db, exam.id)
        if report is None:
            tpl = draft_from_template(exam)["template_id"]
            db.add(
                Report(
                    exam_id=exam.id,
                    author_id=who.user.id,
                    template_id=tpl,
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
            )
            await db.flush()
        else:
            done = await db.execute(
                update(Report)
                .where(Report.exam_id == exam.id, Report.signed_at.is_(None))
                .values(updated_at=now, **fields)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE: a CursorResult
                raise conflict("the report is signed; add an addendum instead", "report_signed")
        return {}, {**fields, "author": person(who.user)}

    _exam, event, result = await _execute(request, who, Command.REPORT_DRAFT, effect)
    return JSONResponse({"exam": result, "seq": event.seq})


async def sign(request: Request) -> Response:
    who = await authenticate(request)
    body = await parse(request, SignBody)
    await _check_password(request, who, body.password, "report.sign")
    out: dict[str, Any] = {}

    async def effect(db: AsyncSession, exam: Exam, _w: Principal, now: datetime) -> Changes:
        report = await load_report(db, exam.id)
        if report is None:
            raise conflict("there is no draft to sign; save the report first", "no_draft")
        missing = missing_for_signature(report, exam.modality)
        if missing:
            names = ", ".join(
                m["field"] + (" (placeholder left)" if m["reason"] == "placeholder" else "")
                for m in missing
            )
            raise ApiError(
                422, "incomplete_report", f"complete the report first: {names}", fields=missing
            )
        signer = await db.get_one(User, who.user.id)
        points = await stroke.time_points(db, exam, now)
        dose = radiation_dose(exam, ctx(request).settings.drl_file)
        raw = canonical_bytes(signed_content(report, exam, signer, now, points, dose))
        digest = sha256_hex(raw)
        done = await db.execute(
            update(Report)
            .where(Report.exam_id == exam.id, Report.signed_at.is_(None))
            .values(signed_at=now, signer_id=signer.id, canonical=raw.decode(), sha256=digest)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE: a CursorResult
            raise conflict("the report is already signed", "report_signed")
        await billing.create_acts(db, exam, signer.id, now)
        settings = ctx(request).settings
        await open_review(db, settings, exam.id, signer.id, body.review_requested, now)
        if report.critical:  # the critical-result record opens (docs/stroke.md)
            db.add(
                CriticalResult(
                    exam_id=exam.id,
                    finding=report.conclusion,
                    identified_at=now,
                    communicated_by_id=signer.id,
                    created_at=now,
                )
            )
        out.update(sha256=digest, signed_at=ts(now))
        return {"reported_at": now}, {
            "sha256": digest,
            "critical": report.critical,
            "signer": person(signer),
        }

    exam, _event, result = await _execute(request, who, Command.REPORT_SIGN, effect)
    pdf = await archive_latest(archive_ctx(request), exam)
    await outbox.prerender(ctx(request), exam.id, pdf)
    return JSONResponse({**out, "exam": result})


async def add_addendum(request: Request) -> Response:
    who = await authenticate(request)
    body = await parse(request, AddendumBody)
    await _check_password(request, who, body.password, "report.addendum")
    out: dict[str, Any] = {}

    async def effect(db: AsyncSession, exam: Exam, _w: Principal, now: datetime) -> Changes:
        report = await load_report(db, exam.id)
        assert report is not None and report.sha256 is not None  # status reported/delivered
        count = (
            await db.scalar(
                select(func.count()).select_from(Addendum).where(Addendum.exam_id == exam.id)
            )
            or 0
        )
        previous = await db.scalar(
            select(Addendum.sha256)
            .where(Addendum.exam_id == exam.id)
            .order_by(Addendum.number.desc())
            .limit(1)
        )
        signer = await db.get_one(User, who.user.id)
        raw = canonical_bytes(
            addendum_content(
                report.sha256, previous or report.sha256, count + 1, body.text, signer, now
            )
        )
        digest = sha256_hex(raw)
        db.add(
            Addendum(
                exam_id=exam.id,
                number=count + 1,
                text=body.text,
                signer_id=signer.id,
                signed_at=now,
                canonical=raw.decode(),
                sha256=digest,
            )
        )
        await db.flush()
        out.update(number=count + 1, sha256=digest, report_sha256=report.sha256)
        return {}, {
            "number": count + 1,
            "text": body.text,
            "sha256": digest,
            "report_sha256": report.sha256,
            "signer": person(signer),
        }

    exam, _event, result = await _execute(request, who, Command.ADDENDUM, effect)
    pdf = await archive_latest(archive_ctx(request), exam)
    await outbox.prerender(ctx(request), exam.id, pdf)
    return JSONResponse({**out, "exam": result}, status_code=201)


async def acknowledge(request: Request) -> Response:
    who = await authenticate(request)
    ack = await _optional_body(request, AcknowledgeBody)

    async def effect(db: AsyncSession, exam: Exam, _w: Principal, now: datetime) -> Changes:
        report = await load_report(db, exam.id)
        assert report is not None
        if report.critical and not ack.critical_acknowledged:
            raise ApiError(
                422,
                "critical_ack_required",
                "the report has a critical finding: acknowledge it with critical_acknowledged",
                fields=[{"field": "critical_acknowledged", "message": "must be true"}],
            )
        await db.execute(
            update(Report)
            .where(Report.exam_id == exam.id)
            .values(
                acknowledged_at=now,
                acknowledged_by_id=who.user.id,
                critical_acknowledged=report.critical and ack.critical_acknowledged,
            )
        )
        if report.critical:  # received in the room, unless a call was logged first
            await db.execute(
                update(CriticalResult)
                .where(CriticalResult.exam_id == exam.id, CriticalResult.received_at.is_(None))
                .values(
                    recipient_name=who.user.display_name,
                    recipient_role=str(who.role),
                    recipient_user_id=who.user.id,
                    received_at=now,
                    method="room",
                )
            )
        return {"delivered_at": now}, {
            "acknowledged_by": person(who.user),
            "critical": report.critical,
            "critical_acknowledged": report.critical and ack.critical_acknowledged,
        }

    _exam, _event, result = await _execute(request, who, Command.ACKNOWLEDGE, effect)
    return JSONResponse(result)


routes = [
    Route("/report-templates", get_templates, methods=["GET"]),
    Route("/exams/{exam_id}/report", get_report, methods=["GET"]),
    Route("/exams/{exam_id}/report", put_draft, methods=["PUT"]),
    Route("/exams/{exam_id}/report/sign", sign, methods=["POST"]),
    Route("/exams/{exam_id}/report/addenda", add_addendum, methods=["POST"]),
    Route("/exams/{exam_id}/acknowledge", acknowledge, methods=["POST"]),
    *report_files.routes,
]
