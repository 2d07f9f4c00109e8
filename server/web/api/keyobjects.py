"""Key images and measurements of an exam as DICOM objects in its study:
``/api/exams/{exam_id}/key-objects`` (docs/api.md "Key images and measurements")."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import ExamStatus, Role
from server.core.errors import ApiError, conflict
from server.exams.authz import load_exam, require_role
from server.reports import keyobjects
from server.web.http import parse
from server.web.request import archive_ctx, authenticate, record_request


async def save(request: Request) -> Response:
    """Build a KO of the marked images and a TID 1500 SR of the measurements from the
    body, file them into the exam's study; only the exam's radiologist."""
    who = await authenticate(request)
    require_role(who, Role.RADIOLOGIST)
    body = await parse(request, keyobjects.KeyObjectsBody)
    app = archive_ctx(request)
    async with app.read() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        if exam.assigned_radiologist_id != who.user.id:
            raise ApiError(403, "forbidden", "only the exam's radiologist saves its key images")
        if exam.status == ExamStatus.CANCELLED:
            raise conflict("the exam is cancelled", "exam_cancelled")
        evidence = await keyobjects.load_evidence(db, exam, body)
    institution = exam.establishment.name
    saved = await asyncio.to_thread(
        keyobjects.build,
        body,
        evidence,
        observer=who.user.display_name,
        institution=institution,
        now=app.now(),
    )
    await keyobjects.store(app, exam, saved)
    out = saved.json()
    await record_request(
        request,
        "exam.key_objects.save",
        who,
        exam_id=exam.id,
        detail={
            "key_images": len(body.key_images),
            "measurements": len(body.measurements),
            **{kind: v["sop_instance_uid"] for kind, v in out.items()},
        },
    )
    return JSONResponse(out, status_code=201)


async def list_saved(request: Request) -> Response:
    who = await authenticate(request)
    app = archive_ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, who, request.path_params["exam_id"])
        items = await keyobjects.listed(db, exam)
        await record_request(request, "exam.key_objects.read", who, db, exam_id=exam.id)
        await db.commit()
    return JSONResponse({"documents": items})


routes = [
    Route("/exams/{exam_id}/key-objects", save, methods=["POST"]),
    Route("/exams/{exam_id}/key-objects", list_saved, methods=["GET"]),
]
