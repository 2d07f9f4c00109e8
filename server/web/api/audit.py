"""``GET /api/audit``: the audit trail per exam and per user (coordinators)."""

from __future__ import annotations

from sqlalchemy import or_, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core import audit
from server.core.errors import ApiError
from server.core.models import User
from server.exams.authz import require_role
from server.web.request import authenticate, ctx, record_request


def _int(raw: str | None, name: str, default: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from 1 to {hi}")
    return int(raw)


async def get_audit(request: Request) -> Response:
    """Newest first; ``before=ID`` pages back. ``user`` is an id or a username."""
    who = await authenticate(request)
    require_role(who, Role.COORDINATOR)
    q = request.query_params
    limit = _int(q.get("limit"), "limit", 100, 1000)
    stmt = select(audit.AuditEntry)
    if q.get("before"):
        stmt = stmt.where(audit.AuditEntry.id < _int(q["before"], "before", 1, 2**62))
    if q.get("exam"):
        stmt = stmt.where(audit.AuditEntry.exam_id == q["exam"])
    app = ctx(request)
    async with app.db() as db:
        if q.get("user"):
            raw = q["user"]
            if raw.isdigit():
                stmt = stmt.where(audit.AuditEntry.user_id == int(raw))
            else:
                # Failed logins of a username carry no user id: match both.
                uid = await db.scalar(select(User.id).where(User.username == raw))
                stmt = stmt.where(
                    or_(audit.AuditEntry.user_id == uid, audit.AuditEntry.username == raw)
                )
        rows = (await db.scalars(stmt.order_by(audit.AuditEntry.id.desc()).limit(limit))).all()
        entries = [audit.entry_json(r) for r in rows]
        await record_request(
            request, "audit.read", who, db, detail={"exam": q.get("exam"), "user": q.get("user")}
        )
        await db.commit()
    return JSONResponse({"entries": entries})


routes = [Route("/audit", get_audit, methods=["GET"])]
