"""``POST /api/exams/{id}/<command>``: the routes of the exam's lifecycle commands
(docs/api.md "Exams and commands"). Each parses its body and answers the exam's
JSON; the command itself is ``server.exams.commands``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.lifecycle import Command
from server.exams import commands
from server.web.http import parse
from server.web.request import authenticate, client_addr, ctx


def command_route(command: Command) -> Callable[[Request], Awaitable[Response]]:
    body_model = commands.SIMPLE[command].body

    async def endpoint(request: Request) -> Response:
        principal = await authenticate(request)
        body = await parse(request, body_model) if body_model else None
        result = await commands.run(
            ctx(request),
            principal,
            request.path_params["exam_id"],
            command,
            body,
            addr=client_addr(request),
        )
        return JSONResponse(result)

    endpoint.__name__ = f"command_{command.value}"
    return endpoint


routes = [
    Route("/exams/{exam_id}/accept", command_route(Command.ACCEPT), methods=["POST"]),
    Route("/exams/{exam_id}/protocol", command_route(Command.PROTOCOL), methods=["POST"]),
    Route("/exams/{exam_id}/protocol/ack", command_route(Command.PROTOCOL_ACK), methods=["POST"]),
    Route(
        "/exams/{exam_id}/images-complete",
        command_route(Command.IMAGES_COMPLETE),
        methods=["POST"],
    ),
    Route("/exams/{exam_id}/cancel", command_route(Command.CANCEL), methods=["POST"]),
]
