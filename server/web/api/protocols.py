"""``GET /api/protocols``: the acquisition protocol catalogue (docs/api.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.exams.protocols import catalogue
from server.web.request import authenticate


async def list_protocols(request: Request) -> Response:
    """``GET /api/protocols[?modality=CT][&body_part=HEAD]``."""
    await authenticate(request)
    modality = request.query_params.get("modality")
    body_part = request.query_params.get("body_part")
    items = [
        p
        for p in catalogue()["protocols"]
        if (not modality or p["modality"] == modality.upper())
        and (not body_part or p["body_part"] == body_part.upper())
    ]
    return JSONResponse({"version": catalogue()["version"], "protocols": items})


routes = [Route("/protocols", list_protocols, methods=["GET"])]
