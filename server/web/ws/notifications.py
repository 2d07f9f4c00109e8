"""The personal live channel: ``WS /ws/notifications`` (docs/api.md "Personal channel").

A radiologist's worklist and a coordinator's board must move the moment something is
assigned or escalated, without polling. Each user listens on ``user:{id}``; the
on-call centre's staff also listen on their role's channel (``role:coordinator``,
``role:radiologist``), which carries what concerns whoever holds that role. Site staff
get no role channel: a role channel spans every establishment, they only see theirs.

Notifications are a nudge, not the record: what matters is also an event in the
exam's room (persisted), so a client that was offline reloads its worklist.

The socket holds its session (server/core/access.py): it is closed with
``CloseCode.SESSION_ENDED`` when the session ends.
"""

from __future__ import annotations

import json

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from rooms.types import Role
from server.core.channels import role_channel, user_channel
from server.live.outbox import Outbox
from server.web.request import ctx
from server.web.ws.sockets import accept_caller

ROLE_CHANNELS = frozenset({Role.RADIOLOGIST, Role.COORDINATOR})


def _is_ping(text: str | None) -> bool:
    """The only frame a client sends here is a keep-alive; anything else is ignored."""
    if not text or len(text) > 256:
        return False
    try:
        frame = json.loads(text)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("type") == "ping"


async def notifications_endpoint(ws: WebSocket) -> None:
    app = ctx(ws)
    principal = await accept_caller(ws)
    if principal is None:
        return
    # A client that does not read is closed; it resyncs its worklist over HTTP.
    outbox = Outbox(ws, "slow consumer: reconnect and reload")
    hold = await app.access.hold(principal, outbox.finish)
    channels = [user_channel(principal.user.id)]
    if principal.role in ROLE_CHANNELS:
        channels.append(role_channel(principal.role))
    # The welcome is queued first, so it goes out before any notification.
    outbox.push({"type": "welcome", "user": principal.user.id, "channels": channels})
    subscriptions = []
    try:
        for channel in channels:
            subscriptions.append(await app.bus.subscribe(channel, outbox.push))
        while not outbox.closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if _is_ping(message.get("text")) and await app.access.confirm(hold):
                outbox.push({"type": "pong"})
    except WebSocketDisconnect:
        pass
    finally:
        app.access.release(hold)
        for subscription in subscriptions:
            await subscription.close()
        outbox.stop()


routes = [WebSocketRoute("/ws/notifications", notifications_endpoint)]
