"""The Starlette application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Match, Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from dicomweb.outage import DATABASE_ERRORS, database_error_handler
from server.archive import service as archive
from server.composition import app_context
from server.core.config import Settings
from server.core.errors import ApiError
from server.core.logs import configure_logging
from server.live import room
from server.web import constants, notifications
from server.web.api import audit as audit_api
from server.web.api import billing as billing_api
from server.web.api import calls as calls_api
from server.web.api import commands as commands_api
from server.web.api import exams as exams_api
from server.web.api import priors as priors_api
from server.web.api import protocols, turnaround
from server.web.api import reconciliation as reconciliation_api
from server.web.api import reports as reports_api
from server.web.api import roster as roster_api
from server.web.api import session as session_api
from server.web.errors import (
    audited_api_error_handler,
    http_error_handler,
    server_error_handler,
)
from server.web.middleware import (
    AccessLog,
    RefuseNul,
    SecurityHeaders,
    has_nul,
)
from server.worker import start_timer_loop

FRONTEND = Path(__file__).resolve().parent.parent.parent / "frontend"


class App(Starlette):
    """Starlette, with the long-lived sockets (exam rooms, notifications) handed
    straight to their endpoints. Through the middleware stack, each socket would
    keep a dozen suspended frames (error and exception middlewares, router, route)
    for its whole life, several KiB each; none of them acts on a socket."""

    def __init__(self, *, sockets: list[WebSocketRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sockets = sockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not has_nul(scope):  # else RefuseNul says no
            for route in self.sockets:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self
                    scope.update(child)
                    await route.endpoint(WebSocket(scope, receive, send))
                    return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> App:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with app_context(settings) as context:
            app.state.ctx = context
            context.rooms.start()
            context.ingestor.warm_up()
            # With the memory engine nobody else can fire the timers (docs/roster.md).
            timers = None if settings.redis_url else start_timer_loop(context)
            try:
                yield
            finally:
                if timers is not None:
                    await timers.stop()
                await context.rooms.close()

    api_routes = [
        *session_api.routes,
        *exams_api.routes,
        *commands_api.routes,
        *protocols.routes,
        *reports_api.routes,
        *billing_api.routes,
        *audit_api.routes,
        *roster_api.routes,
        *turnaround.routes,
        *calls_api.routes,
        *reconciliation_api.routes,
        *priors_api.routes,
    ]
    sockets = [*room.routes, *notifications.routes]
    routes = [
        Mount("/api", routes=api_routes),
        Mount("/dicomweb", app=archive.mount),
        *sockets,
        *constants.routes,  # before the static files: rendered, not a file
        Mount("/", app=StaticFiles(directory=FRONTEND, html=True), name="frontend"),
    ]
    return App(
        sockets=sockets,
        routes=routes,
        middleware=[Middleware(AccessLog), Middleware(SecurityHeaders), Middleware(RefuseNul)],
        exception_handlers={
            ApiError: audited_api_error_handler,
            HTTPException: http_error_handler,
            # 503 + Retry-After when the database is out of reach, else on to the 500.
            **dict.fromkeys(DATABASE_ERRORS, database_error_handler),
            Exception: server_error_handler,
        },
        lifespan=lifespan,
    )
