"""The Starlette application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rooms.engine import create_engine as create_bus
from server.api import exams as exams_api
from server.api import session as session_api
from server.config import Settings
from server.context import AppContext
from server.db import create_engine, session_factory
from server.errors import ApiError, api_error_handler, http_error_handler, server_error_handler
from server.middleware import AccessLog, SecurityHeaders, configure_logging
from server.passwords import Passwords

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sql = create_engine(settings.database_url)
        bus = create_bus(settings.redis_url, settings.redis_prefix)
        await bus.start()
        app.state.ctx = AppContext(
            settings=settings,
            sql=sql,
            db=session_factory(sql),
            passwords=Passwords.from_settings(settings),
            bus=bus,
        )
        try:
            yield
        finally:
            await bus.close()
            await sql.dispose()

    api_routes = [*session_api.routes, *exams_api.routes]
    routes = [
        Mount("/api", routes=api_routes),
        Mount("/", app=StaticFiles(directory=FRONTEND, html=True), name="frontend"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessLog), Middleware(SecurityHeaders)],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_error_handler,
            Exception: server_error_handler,
        },
        lifespan=lifespan,
    )
