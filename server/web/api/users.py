"""Accounts over the API (docs/design.md "Accounts"): one's own password and
sessions, and an administrator's deactivation, reactivation, password reset and
role change. Each is audited in the transaction that makes it, and the sessions it
ends close their open sockets at once, in every process (server/core/access.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.accounts import auth, throttle
from server.accounts.service import (
    AccountError,
    NoSuchUser,
    announce,
    find_user,
    revoke_sessions,
    set_active,
    set_password,
    set_role,
)
from server.core.errors import ApiError, not_found
from server.core.models import User
from server.exams.authz import require_role
from server.web.http import parse
from server.web.request import authenticate, client_addr, ctx, record_request

# Applies an administrator's change to a user in the transaction: how many
# sessions it ended, and what to add to the answer and the audit row.
Change = Callable[[AsyncSession, User], Awaitable[tuple[int, dict[str, object]]]]

Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: Password
    new: Password


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    new: Password


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    establishment: Annotated[str, StringConstraints(max_length=32)] | None = None


def invalid(exc: AccountError) -> ApiError:
    if isinstance(exc, NoSuchUser):
        return not_found("user")
    return ApiError(422, "invalid_account", str(exc))


async def change_own_password(request: Request) -> Response:
    """``POST /api/me/password {current, new}``: the current password is asked
    (throttled like a login); the caller's other sessions end, this one stays."""
    principal = await authenticate(request)
    body = await parse(request, PasswordChange)
    app = ctx(request)
    addr = client_addr(request)
    username = principal.user.username
    await throttle.check(app, username, addr)
    async with app.db() as db:
        user = await db.get(User, principal.user.id)
        assert user is not None
        if not await app.passwords.verify_async(user.password_hash, body.current):
            await db.rollback()
            await throttle.failed(app, username, addr)
            await record_request(
                request,
                "account.password",
                principal,
                outcome="failed",
                detail={"code": "wrong_password"},
            )
            raise ApiError(403, "wrong_password", "the current password is wrong")
        try:
            ended = await set_password(app, db, user, body.new, keep=principal.session_id)
        except AccountError as exc:
            raise invalid(exc) from None
        await record_request(
            request, "account.password", principal, db, detail={"sessions_ended": ended}
        )
        await db.commit()
    await throttle.succeeded(app, username, addr)
    await announce(app, principal.user.id, keep=principal.session_id, reason="password changed")
    return JSONResponse({"sessions_ended": ended})


async def logout_everywhere(request: Request) -> Response:
    """``DELETE /api/me/sessions``: every session of the caller ends, this one too."""
    principal = await authenticate(request)
    app = ctx(request)
    async with app.db() as db:
        ended = await revoke_sessions(app, db, principal.user.id)
        await record_request(
            request, "account.logout_all", principal, db, detail={"sessions_ended": ended}
        )
        await db.commit()
    await announce(app, principal.user.id, reason="logged out everywhere")
    response = Response(status_code=204)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _admin_change(request: Request, action: str, change: Change) -> Response:
    principal = await authenticate(request)
    require_role(principal, Role.ADMIN)
    app = ctx(request)
    username = request.path_params["username"]
    async with app.db() as db:
        try:
            user = await find_user(db, username)
            if user.id == principal.user.id:
                raise ApiError(
                    409, "own_account", "use /api/me/password; an admin cannot do this to itself"
                )
            ended, detail = await change(db, user)
        except AccountError as exc:
            raise invalid(exc) from None
        await record_request(
            request,
            action,
            principal,
            db,
            detail={"username": user.username, "sessions_ended": ended, **detail},
        )
        await db.commit()
        user_id = user.id
    await announce(app, user_id, reason=action.replace("account.", "account "))
    return JSONResponse({"username": username, "sessions_ended": ended, **detail})


async def deactivate(request: Request) -> Response:
    """``POST /api/users/{username}/deactivate`` (admin): every session ends."""
    app = ctx(request)

    async def change(db: AsyncSession, user: User) -> tuple[int, dict[str, object]]:
        return await set_active(app, db, user, False), {"active": False}

    return await _admin_change(request, "account.deactivate", change)


async def activate(request: Request) -> Response:
    """``POST /api/users/{username}/activate`` (admin)."""
    app = ctx(request)

    async def change(db: AsyncSession, user: User) -> tuple[int, dict[str, object]]:
        return await set_active(app, db, user, True), {"active": True}

    return await _admin_change(request, "account.activate", change)


async def reset_password(request: Request) -> Response:
    """``POST /api/users/{username}/password {new}`` (admin): every session ends."""
    app = ctx(request)
    body = await parse(request, PasswordReset)

    async def change(db: AsyncSession, user: User) -> tuple[int, dict[str, object]]:
        return await set_password(app, db, user, body.new), {}

    return await _admin_change(request, "account.password_reset", change)


async def change_role(request: Request) -> Response:
    """``POST /api/users/{username}/role {role, establishment}`` (admin): every
    session, opened as the former role, ends."""
    app = ctx(request)
    body = await parse(request, RoleChange)

    async def change(db: AsyncSession, user: User) -> tuple[int, dict[str, object]]:
        ended = await set_role(app, db, user, body.role, body.establishment)
        return ended, {"role": body.role, "establishment": body.establishment}

    return await _admin_change(request, "account.role", change)


routes = [
    Route("/me/password", change_own_password, methods=["POST"]),
    Route("/me/sessions", logout_everywhere, methods=["DELETE"]),
    Route("/users/{username}/deactivate", deactivate, methods=["POST"]),
    Route("/users/{username}/activate", activate, methods=["POST"]),
    Route("/users/{username}/password", reset_password, methods=["POST"]),
    Route("/users/{username}/role", change_role, methods=["POST"]),
]
