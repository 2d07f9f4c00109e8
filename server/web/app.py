"""The Starlette application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from server.archive.context import ArchiveContext
from server.composition import app_context
from server.core.config import Settings
from server.core.errors import ApiError
from server.core.logs import configure_logging
from server.web import constants, fhir
from server.web.api import accountability as accountability_api
from server.web.api import audit as audit_api
from server.web.api import billing as billing_api
from server.web.api import calls as calls_api
from server.web.api import commands as commands_api
from server.web.api import critical as critical_api
from server.web.api import deliveries as deliveries_api
from server.web.api import exams as exams_api
from server.web.api import keyobjects as keyobjects_api
from server.web.api import patients as patients_api
from server.web.api import priors as priors_api
from server.web.api import protocols, turnaround
from server.web.api import reconciliation as reconciliation_api
from server.web.api import reports as reports_api
from server.web.api import review as review_api
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
from server.web.vendor import VendorFiles
from server.web.ws import notifications, room
from server.worker import start_timer_loop

FRONTEND = Path(__file__).resolve().parent.parent.parent / "frontend"
# How long a stopping app waits for the storage's start-up reconciliation.
RECONCILE_GRACE_S = 10.0

log = logging.getLogger("teleimagerie.app")


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


async def archive_mount(scope: Scope, receive: Receive, send: Send) -> None:
    """``/dicomweb``: the archive built at start-up for this process."""
    context: ArchiveContext = scope["app"].state.ctx
    await context.archive(scope, receive, send)


async def _reconciled(task: asyncio.Task[Any] | None) -> None:
    """Let the start-up reconciliation of the storage (docs/dicomweb.md "Start-up
    reconciliation") finish before the database closes; one that takes longer
    than ``RECONCILE_GRACE_S`` is cancelled (the next start-up does it again).
    Either way it has ended when this returns, even when the wait itself is
    cancelled: a reconciliation left running past the engine's disposal would
    have its query answered by SQLite's thread into a closed event loop."""
    if task is None or task.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), RECONCILE_GRACE_S)
    except TimeoutError:
        log.warning("stopping: the storage reconciliation is cut short")
        await _cancelled(task)
    except asyncio.CancelledError:
        await _cancelled(task)
        raise


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended (its query too)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
            # Stopped in reverse order, each step even when one before it failed:
            # what queries the database has ended before app_context disposes it.
            async with contextlib.AsyncExitStack() as stopping:
                stopping.push_async_callback(_reconciled, context.ingestor.reconciling)
                stopping.push_async_callback(context.rooms.close)
                if timers is not None:
                    stopping.push_async_callback(timers.stop)
                yield

    api_routes = [
        *session_api.routes,
        *exams_api.routes,
        *patients_api.routes,
        *commands_api.routes,
        *protocols.routes,
        *reports_api.routes,
        *critical_api.routes,
        *review_api.routes,
        *billing_api.routes,
        *audit_api.routes,
        *roster_api.routes,
        *turnaround.routes,
        *calls_api.routes,
        *reconciliation_api.routes,
        *deliveries_api.routes,
        *priors_api.routes,
        *accountability_api.routes,
        *keyobjects_api.routes,
    ]
    sockets = [*room.routes, *notifications.routes]
    routes = [
        Mount("/api", routes=api_routes),
        Mount("/fhir", routes=fhir.routes),
        Mount("/dicomweb", app=archive_mount),
        *sockets,
        *constants.routes,  # before the static files: rendered, not a file
        Mount("/vendor", app=VendorFiles(directory=FRONTEND / "vendor"), name="vendor"),
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
