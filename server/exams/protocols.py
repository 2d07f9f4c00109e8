"""The acquisition protocol catalogue: a versioned data file, read once."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.accounts.auth import authenticate

CATALOGUE = Path(__file__).parent.parent / "data" / "protocols.json"


@cache
def catalogue() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return data


def find(protocol_id: str) -> dict[str, Any] | None:
    for protocol in catalogue()["protocols"]:
        if protocol["id"] == protocol_id:
            return dict(protocol)
    return None


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
