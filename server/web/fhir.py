"""``/fhir``: the FHIR R4 API (docs/fhir.md). Same authentication and tenancy as
``/api`` (a user sees the resources of the exams in their scope and nothing else),
every read audited; errors are OperationOutcome resources (FHIR R4 3.1.0.4,
"RESTful API", http://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError
from server.core.identity import Principal
from server.core.models import Exam
from server.exams.authz import exam_scope, require_role
from server.exams.service import ExamRequest
from server.interfaces import fhir
from server.reports.delivery import load_addenda, load_report, rendered
from server.web.api.exams import create_requested
from server.web.http import read_body, validation_error
from server.web.request import authenticate, ctx, record_request

Handler = Callable[[Request], Awaitable[Response]]
SEARCH_LIMIT = 200
STATUS_OF = {  # ServiceRequest.status -> exam statuses
    "active": ("requested", "accepted", "protocoled", "acquiring", "images_complete"),
    "completed": ("reported", "delivered"),
    "revoked": ("cancelled",),
}


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type=fhir.MEDIA_TYPE,
        headers=headers or None,
    )


def outcomes(handler: Handler) -> Handler:
    """Errors as OperationOutcome, with the status and code /api would give."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return fhir_response(
                fhir.outcome(exc.status, exc.code, exc.message), exc.status, **(exc.headers or {})
            )

    endpoint.__name__ = handler.__name__
    return endpoint


def _token(raw: str) -> str:
    """A token search value: ``system|value`` or ``value``; the value is what we match."""
    return raw.rsplit("|", 1)[-1]


def _subject_ipp(raw: str, exams: list[Exam]) -> set[str]:
    pid = raw.removeprefix("Patient/")
    return {e.id for e in exams if fhir.patient_id(e.establishment_id, e.patient_id) == pid}


async def _exams(request: Request, who: Principal, stmt: Select[Any]) -> list[Exam]:
    async with ctx(request).read() as db:
        rows = await db.scalars(
            stmt.where(exam_scope(who)).order_by(Exam.created_at.desc()).limit(SEARCH_LIMIT)
        )
        return list(rows.unique().all())


async def _audit(request: Request, who: Principal, kind: str, exams: list[Exam]) -> None:
    await record_request(
        request,
        "fhir.read",
        who,
        exam_id=exams[0].id if len(exams) == 1 else None,
        detail={"resource": kind, "count": len(exams)},
    )


def bundle(request: Request, kind: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/fhir"
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{base}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def _not_found(kind: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {kind}")


async def _filtered(request: Request, who: Principal) -> list[Exam]:
    """The exams in scope that the common search parameters keep."""
    q = request.query_params
    stmt = select(Exam)
    if q.get("identifier"):
        value = _token(q["identifier"])
        stmt = stmt.where(
            (Exam.accession_number == value)
            | (Exam.study_instance_uid == value.removeprefix("urn:oid:"))
            | (Exam.patient_id == value)
        )
    if q.get("status") and request.path_params.get("kind") == "ServiceRequest":
        if q["status"] not in STATUS_OF:
            raise ApiError(400, "bad_parameter", f"unknown status {q['status']!r}")
        stmt = stmt.where(Exam.status.in_(STATUS_OF[q["status"]]))
    exams = await _exams(request, who, stmt)
    if q.get("subject") or q.get("patient"):
        keep = _subject_ipp(q.get("subject") or q.get("patient") or "", exams)
        exams = [e for e in exams if e.id in keep]
    return exams


@outcomes
async def metadata(request: Request) -> Response:
    now = ctx(request).now().isoformat().replace("+00:00", "Z")
    base = str(request.base_url).rstrip("/") + "/fhir"
    return fhir_response(fhir.capability_statement(base, now))


async def _resources(request: Request, kind: str, exams: list[Exam]) -> list[dict[str, Any]]:
    if kind == "Patient":
        seen: dict[str, dict[str, Any]] = {}
        for exam in exams:  # newest first: the latest demographics win
            resource = fhir.patient(exam)
            seen.setdefault(resource["id"], resource)
        return list(seen.values())
    if kind == "ServiceRequest":
        return [fhir.service_request(e) for e in exams]
    if kind == "ImagingStudy":
        return [fhir.imaging_study(e) for e in exams]
    out = []
    async with ctx(request).read() as db:
        for exam in exams:
            report = await load_report(db, exam.id)
            if report is None or report.signed_at is None:
                continue
            addenda = await load_addenda(db, exam.id)
            _pdf, body, _dicom = rendered(report, addenda)
            out.append(fhir.diagnostic_report(exam, body))
    return out


def _kind(request: Request) -> str:
    kind = str(request.path_params["kind"])
    if kind not in fhir.MODELS:
        raise ApiError(404, "not_found", f"no resource type {kind!r} here")
    return kind


@outcomes
async def search(request: Request) -> Response:
    who = await authenticate(request)
    kind = _kind(request)
    exams = await _filtered(request, who)
    q = request.query_params
    resources = await _resources(request, kind, exams)
    if kind == "Patient":
        if q.get("family"):
            family = q["family"].casefold()
            resources = [
                r
                for r in resources
                if any(n.get("family", "").casefold().startswith(family) for n in r["name"])
            ]
        if q.get("birthdate"):
            resources = [r for r in resources if r.get("birthDate") == q["birthdate"]]
    await _audit(request, who, kind, exams)
    return fhir_response(bundle(request, kind, resources))


@outcomes
async def read(request: Request) -> Response:
    who = await authenticate(request)
    kind = _kind(request)
    rid = str(request.path_params["id"])
    if kind == "Patient":
        exams = [
            e
            for e in await _exams(request, who, select(Exam))
            if fhir.patient_id(e.establishment_id, e.patient_id) == rid
        ]
    else:
        exams = await _exams(request, who, select(Exam).where(Exam.id == rid))
    resources = await _resources(request, kind, exams[:1])
    if not resources:
        raise _not_found(kind)
    await _audit(request, who, kind, exams[:1])
    return fhir_response(resources[0])


@outcomes
async def create_service_request(request: Request) -> Response:
    """An urgentist's exam request as a ServiceRequest (docs/fhir.md "Requesting an exam")."""
    who = await authenticate(request)
    require_role(who, Role.URGENTIST)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (fhir.MEDIA_TYPE, "application/json"):
        raise ApiError(415, "unsupported_media_type", f"send the body as {fhir.MEDIA_TYPE}")
    raw = await read_body(request, ctx(request).settings.max_body_bytes)
    try:
        resource = json.loads(raw)
    except ValueError:
        raise ApiError(400, "bad_json", "the body is not JSON") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
        raise ApiError(422, "invalid_fields", "the body is not a ServiceRequest")
    try:
        req = ExamRequest.model_validate(fhir.exam_request(resource))
    except ValidationError as exc:
        raise validation_error(exc) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_fields", str(exc)) from None
    exam, _body = await create_requested(request, who, req)
    async with ctx(request).read() as db:
        fresh = await db.get_one(Exam, exam.id)
        created = fhir.service_request(fresh)
    return fhir_response(created, 201, Location=f"/fhir/ServiceRequest/{exam.id}")


routes = [
    Route("/metadata", metadata, methods=["GET"]),
    Route("/ServiceRequest", create_service_request, methods=["POST"]),
    Route("/{kind}", search, methods=["GET"]),
    Route("/{kind}/{id}", read, methods=["GET"]),
]
