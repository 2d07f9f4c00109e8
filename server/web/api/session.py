"""``POST/DELETE /api/session`` and ``GET /api/me``; the account routes
(server/web/api/users.py) are mounted with them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.accounts import auth
from server.core.errors import ApiError
from server.core.identity import Person, Principal, user_json
from server.core.models import User
from server.web.http import parse
from server.web.request import authenticate, client_addr, ctx, record_request, session_token


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _secure(request: Request) -> bool:
    setting = ctx(request).settings.secure_cookies
    return request.url.scheme == "https" if setting is None else setting


async def create_session(request: Request) -> Response:
    creds = await parse(request, Credentials)
    app = ctx(request)
    async with app.db() as db:
        try:
            token, user = await auth.login(
                app, db, creds.username, creds.password, client_addr(request)
            )
        except ApiError as exc:
            await db.rollback()
            await record_request(
                request,
                "login",
                None,
                username=creds.username[:64],
                outcome="failed",
                detail={"code": exc.code},
            )
            raise
        await record_request(
            request, "login", Principal(user, 0), db, detail={"username": user.username}
        )
        await db.commit()
        body = {"token": token, "user": caller_json(request, user)}
    response = JSONResponse(body)
    response.set_cookie(
        auth.COOKIE,
        token,
        max_age=app.settings.session_absolute_s,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )
    return response


async def delete_session(request: Request) -> Response:
    principal = await authenticate(request)
    token = session_token(request)
    app = ctx(request)
    assert token is not None
    async with app.db() as db:
        await auth.logout(app, db, token, app.now())
        await record_request(request, "logout", principal, db)
        await db.commit()
    # This session's sockets (rooms, notifications, calls) close, in every process.
    await app.access.end(principal.user.id, [principal.session_id], reason="logged out")
    response = Response(status_code=204)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
    return response


def caller_json(request: Request, user: User | Person) -> dict[str, Any]:
    """The caller as the login and ``GET /api/me`` give it: the user, and the OHIF
    viewer's address when one is configured (the viewer's "open in OHIF" link,
    docs/configuration.md "OHIF")."""
    body = user_json(user)
    ohif = ctx(request).settings.ohif_url
    if ohif:
        body["ohif_url"] = ohif
    return body


async def me(request: Request) -> Response:
    principal = await authenticate(request)
    return JSONResponse(caller_json(request, principal.user))


def _routes() -> list[Route]:
    from server.web.api import users

    return [
        Route("/session", create_session, methods=["POST"]),
        Route("/session", delete_session, methods=["DELETE"]),
        Route("/me", me, methods=["GET"]),
        *users.routes,
    ]


routes = _routes()
