"""The one error shape of the API: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """Raised anywhere in a request; rendered by :func:`api_error_handler`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            err["fields"] = self.fields
        return {"error": err}


def not_found(what: str = "exam") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def forbidden(message: str = "your role may not do this") -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthenticated() -> ApiError:
    return ApiError(401, "not_authenticated", "log in first")


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


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
