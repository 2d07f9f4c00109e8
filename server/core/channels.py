"""The engine's channel names, and the personal notifications sent on them
(docs/api.md "Exam room" and "Personal channel", docs/rooms.md).

Every process agrees on these names: the web process subscribes to them, the
worker, the gateway and the CLI publish on them. They sit in the core so that a
domain can notify a user without importing the sockets that listen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.core.context import AppContext


def room_channel(exam_id: str) -> str:
    """An exam room: committed events, presence, calls (docs/rooms.md)."""
    return f"exam:{exam_id}"


def call_node_channel(node: str) -> str:
    """A web process's calls: the call frames of members on other processes
    (docs/calls.md "Several web processes")."""
    return f"callnode:{node}"


def call_member_channel(conn_id: str) -> str:
    """What the process holding a call sends back to one member on another process."""
    return f"callmember:{conn_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def role_channel(role: str) -> str:
    return f"role:{role}"


def frame(kind: str, exam: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "notification", "kind": kind, "exam": exam, "body": body}


def notifications(
    kind: str,
    exam: dict[str, Any] | None,
    body: dict[str, Any],
    *,
    users: Iterable[int] = (),
    roles: Iterable[str] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """One notification for each named user and role channel (each at most once), as
    (channel, message) pairs for the engine's ``publish_many``."""
    message = frame(kind, exam, body)
    return [(user_channel(user_id), message) for user_id in dict.fromkeys(users)] + [
        (role_channel(role), message) for role in dict.fromkeys(roles)
    ]


async def notify(
    app: AppContext,
    kind: str,
    exam: dict[str, Any] | None,
    body: dict[str, Any],
    *,
    users: Iterable[int] = (),
    roles: Iterable[str] = (),
) -> None:
    """Push one notification to each named user and role channel (each at most once),
    in one round trip to the engine."""
    await app.bus.publish_many(notifications(kind, exam, body, users=users, roles=roles))
