"""Consult recordings over HTTP: the list per exam and one file (docs/calls.md "Recording")."""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from rooms.permissions import is_participant_role
from rooms.types import Role
from server.calls.recording import CallRecording, recording_json, recordings_dir
from server.core.errors import not_found
from server.exams.authz import load_exam
from server.web.request import authenticate, ctx, record_request


async def list_recordings(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    if not is_participant_role(Role(principal.role)):
        raise not_found()
    app = ctx(request)
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
        rows = await db.scalars(
            select(CallRecording)
            .where(CallRecording.exam_id == exam.id)
            .order_by(CallRecording.started_at, CallRecording.id)
        )
        return JSONResponse({"recordings": [recording_json(r) for r in rows]})


async def get_recording(request: Request) -> FileResponse:
    principal = await authenticate(request)
    if not is_participant_role(Role(principal.role)):
        raise not_found("recording")
    app = ctx(request)
    async with app.db() as db:
        row = await db.get(CallRecording, request.path_params["recording_id"])
        if row is None or row.ended_at is None:
            raise not_found("recording")
        await load_exam(db, principal, row.exam_id)  # 404 outside the caller's scope
        await record_request(
            request,
            "call_recording.read",
            principal,
            db,
            exam_id=row.exam_id,
            detail={"recording": row.id},
        )
        await db.commit()
    return FileResponse(recordings_dir(app.settings) / row.path, media_type="audio/ogg")


routes = [
    Route("/exams/{exam_id}/call-recordings", list_recordings, methods=["GET"]),
    Route("/call-recordings/{recording_id}", get_recording, methods=["GET"]),
]
