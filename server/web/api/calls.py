"""``GET /api/calls/config`` and ``GET /api/exams/{id}/call`` (docs/calls.md).

The browser needs the ICE servers (STUN/TURN, with their credentials) before it
builds its RTCPeerConnection, so they come from the server's configuration and
only to signed-in room participants; the call state of an exam is shown to the
people who may enter its room, like the room itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rooms.permissions import is_participant_role
from rooms.types import Role
from server.calls.turn import ice_servers_for
from server.core.errors import ApiError, not_found
from server.exams.authz import load_exam
from server.web.api.recordings import routes as recording_routes
from server.web.request import authenticate, ctx, live_ctx


async def call_config(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    if not is_participant_role(Role(principal.role)):
        raise ApiError(403, "forbidden", "only room participants take part in calls")
    app = ctx(request)
    settings = app.settings
    now = app.now().timestamp()
    return JSONResponse(
        {
            # Fetched by the browser before each call: fresh TURN credentials each time.
            "ice_servers": ice_servers_for(settings, principal.user.id, now),
            "max_participants": settings.call_max_participants,
        }
    )


async def call_state(request: Request) -> JSONResponse:
    principal = await authenticate(request)
    app = live_ctx(request)
    if not is_participant_role(Role(principal.role)):
        raise not_found()
    async with app.db() as db:
        exam = await load_exam(db, principal, request.path_params["exam_id"])
    return JSONResponse(app.calls.state(exam.id))


routes = [
    Route("/calls/config", call_config, methods=["GET"]),
    Route("/exams/{exam_id}/call", call_state, methods=["GET"]),
    *recording_routes,
]
