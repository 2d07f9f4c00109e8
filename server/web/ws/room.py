"""``WS /ws/exams/{id}?since=N``: the exam room's endpoint (docs/api.md "Exam
room"). It opens the socket and reads the request; the room itself is
``server.live.room``."""

from __future__ import annotations

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.live import room
from server.web.request import client_addr, live_ctx
from server.web.ws.sockets import accept_caller, refuse


def since_param(ws: WebSocket) -> int:
    try:
        return max(0, int(ws.query_params.get("since", "0")))
    except ValueError:
        return 0


async def room_endpoint(ws: WebSocket) -> None:
    principal = await accept_caller(ws)
    if principal is None:
        return
    try:
        refusal = await room.enter(
            live_ctx(ws),
            ws,  # the room's Transport as it is
            principal,
            ws.path_params["exam_id"],
            since_param(ws),
            client_addr(ws),
        )
    except WebSocketDisconnect:
        return
    if refusal is not None:
        await refuse(ws, principal, refusal.audit_code)
        await ws.close(refusal.close_code, refusal.reason)


routes = [WebSocketRoute("/ws/exams/{exam_id}", room_endpoint)]
