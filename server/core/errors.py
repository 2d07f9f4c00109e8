"""The one error shape of the API: ``{"error": {"code", "message"}}`` (docs/api.md "Error codes").

Plain exceptions, with no web framework: a service raises them, and the web layer
(server/web/errors.py) renders them as responses."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere in a request; rendered by ``server.web.errors.api_error_handler``."""

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
