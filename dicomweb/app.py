"""The DICOMweb sub-application (PS3.18), mounted by the server at ``/dicomweb``.

Routes follow PS3.18 Table 10.4.1-1 (WADO-RS), 10.5.1-1 (STOW-RS) and
10.6.1-1 (QIDO-RS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dicomweb import qido, render, stow, wado, wadouri
from dicomweb.context import Context
from dicomweb.http import CORSMiddleware, error_response
from dicomweb.ingest import Ingestor
from dicomweb.matching import Level
from dicomweb.outage import DATABASE_ERRORS, database_error_handler
from dicomweb.storage import Storage
from dicomweb.types import MISSING_FILE, Access, DicomwebConfig, DicomwebError, IngestHooks

log = logging.getLogger("teleimagerie.dicomweb")

Handler = Callable[[Request], Awaitable[Response]]


def create_dicomweb_app(
    config: DicomwebConfig,
    db: async_sessionmaker[AsyncSession],
    access: Access,
    hooks: IngestHooks | None = None,
) -> Starlette:
    """Build the archive. ``db`` must reach a schema with ``dicomweb.tables``."""
    storage = Storage(config.storage_root, config.keep_cached)
    ingestor = Ingestor(config, db, access, hooks, storage)
    ctx = Context(config, db, access, storage, ingestor)

    def search(level: Level) -> Handler:
        async def handler(request: Request) -> Response:
            return await qido.search(request, level, db, access, config.public_base_url)

        return handler

    def bind(fn: Callable[[Request, Context], Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            return await fn(request, ctx)

        return handler

    async def store(request: Request) -> Response:
        return await stow.stow(request, ingestor, config.max_body_bytes)

    study = "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    routes = [
        Route("/studies", store, methods=["POST"]),
        Route(study, store, methods=["POST"]),
        Route("/studies", search("study"), methods=["GET"]),
        Route("/series", search("series"), methods=["GET"]),
        Route("/instances", search("instance"), methods=["GET"]),
        Route(study + "/series", search("series"), methods=["GET"]),
        Route(study + "/instances", search("instance"), methods=["GET"]),
        Route(series + "/instances", search("instance"), methods=["GET"]),
        Route(study, bind(wado.retrieve), methods=["GET"]),
        Route(series, bind(wado.retrieve), methods=["GET"]),
        Route(instance, bind(wado.retrieve), methods=["GET"]),
        Route(study + "/metadata", bind(wado.metadata), methods=["GET"]),
        Route(series + "/metadata", bind(wado.metadata), methods=["GET"]),
        Route(instance + "/metadata", bind(wado.metadata), methods=["GET"]),
        Route(instance + "/frames/{frames}", bind(wado.frames), methods=["GET"]),
        Route(instance + "/bulkdata/{tag}", bind(wado.bulkdata), methods=["GET"]),
        Route(study + "/rendered", bind(render.rendered_many), methods=["GET"]),
        Route(series + "/rendered", bind(render.rendered_many), methods=["GET"]),
        Route(instance + "/rendered", bind(render.rendered), methods=["GET"]),
        Route(instance + "/frames/{frames}/rendered", bind(render.rendered), methods=["GET"]),
        Route(study + "/thumbnail", bind(render.thumbnail), methods=["GET"]),
        Route(series + "/thumbnail", bind(render.thumbnail), methods=["GET"]),
        Route(instance + "/thumbnail", bind(render.thumbnail), methods=["GET"]),
        # WADO-URI (PS3.18 chapter 9): the instance is named in the query.
        Route("/wado", bind(wadouri.wado), methods=["GET"]),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DicomwebError)
        return error_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(DicomwebError(exc.status_code, code, str(exc.detail)))

    async def on_missing(request: Request, exc: Exception) -> Response:
        # An indexed instance whose file is gone from the storage (a disk or backup
        # problem, docs/dicomweb.md "A stored file missing"): said as such, and logged
        # with the path for the archive's administrators.
        assert isinstance(exc, FileNotFoundError)
        path, url = str(exc.filename), request.url.path
        log.error(json.dumps({"event": "archive.file_missing", "path": path, "url": url}))
        return error_response(MISSING_FILE)

    async def on_crash(request: Request, exc: Exception) -> Response:
        # The one error shape even for a fault; the traceback goes to the log only.
        # Connection: close, as the server drops the connection after it.
        response = error_response(DicomwebError(500, "internal_error", "unexpected server error"))
        response.headers["Connection"] = "close"
        return response

    app = Starlette(
        routes=routes,
        middleware=[Middleware(CORSMiddleware, origins=tuple(config.allowed_origins))],
        exception_handlers={
            DicomwebError: on_error,
            HTTPException: on_http,
            FileNotFoundError: on_missing,
            # 503 + Retry-After when the database is out of reach (dicomweb.outage).
            **dict.fromkeys(DATABASE_ERRORS, database_error_handler),
            Exception: on_crash,
        },
    )
    app.state.dicomweb = ctx
    return app
