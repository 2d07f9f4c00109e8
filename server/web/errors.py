"""How errors become responses: the one shape of ``server.core.errors``, the
HTTP errors Starlette raises, and faults (docs/api.md "Error codes")."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.accounts.auth import SCOPE_KEY
from server.core.errors import ApiError
from server.web.request import record_request

log = logging.getLogger("teleimagerie.audit")


async def api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    body = {"error": {"code": code, "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def server_error_handler(_request: Request, _exc: Exception) -> Response:
    """The one shape for a fault, no detail (the traceback goes to the log). The server
    drops the connection after an unhandled exception: say so, so that no client sends
    its next request down a closing connection."""
    body = {"error": {"code": "internal_error", "message": "unexpected server error"}}
    return JSONResponse(body, status_code=500, headers={"Connection": "close"})


# Refusals worth a row: not authenticated, not allowed, not in scope (404).
_DENIALS = {"not_authenticated", "session_expired", "forbidden", "not_found"}


async def audited_api_error_handler(request: Request, exc: Exception) -> Response:
    """Record failed authorisations in one place, then answer as usual."""
    assert isinstance(exc, ApiError)
    if exc.code in _DENIALS and request.url.path.startswith("/api/"):
        try:
            await record_request(
                request,
                "access.denied",
                request.scope.get(SCOPE_KEY),
                outcome="denied",
                exam_id=request.path_params.get("exam_id"),
                detail={"method": request.method, "path": request.url.path[:200], "code": exc.code},
            )
        except Exception:  # the refusal must still reach the client
            log.exception("could not record a refused request in the audit trail")
    return await api_error_handler(request, exc)
