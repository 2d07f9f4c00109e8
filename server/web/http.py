"""Reading request bodies: size limits, strict JSON, validation errors that name fields.

Bodies are decoded as strict JSON (``rooms.strictjson``): too deep, numbers past
64 bits, NUL and lone surrogates get a 400 with a code of their own before any handler
or database sees them (docs/design.md "Crafted input").
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from rooms import strictjson
from server.core.errors import ApiError
from server.web.request import ctx

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"request body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client left, or stopped sending and the server timed it out (already
        # answered 408, server/web/httpserver.py): nobody reads this answer, but the request
        # ends as a handled error rather than a traceback.
        raise ApiError(400, "body_incomplete", "the request body ended early") from None
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await read_body(request, ctx(request).settings.max_body_bytes)
    try:
        text = raw.decode("utf-8")  # RFC 8259 section 8.1
    except UnicodeDecodeError:
        raise ApiError(400, "bad_json", "the body is not valid UTF-8") from None
    try:
        return strictjson.loads(text)
    except strictjson.JsonRefused as exc:
        raise ApiError(400, exc.code, f"the body is refused: {exc.message}") from None


def validation_error(exc: ValidationError) -> ApiError:
    fields = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        fields.append({"field": loc, "message": message})
    names = ", ".join(f["field"] for f in fields)
    return ApiError(422, "invalid_fields", f"invalid or missing fields: {names}", fields=fields)


async def parse(request: Request, model: type[M]) -> M:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
