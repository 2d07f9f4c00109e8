"""Drive an exam to the point where it can be reported, through the real API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.helpers import exam_payload

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]

DRAFT: dict[str, Any] = {
    "indication": "Déficit brachio-facial gauche depuis 1 h 30 : AVC ischémique ?",
    "technique": "Scanner cérébral sans injection.",
    "findings": "Hypodensité cortico-sous-corticale temporale droite. Pas d'hémorragie.",
    "conclusion": "AVC ischémique sylvien droit récent. Pas de transformation hémorragique.",
    "dose": "PDL : 850 mGy.cm ; CTDIvol : 55 mGy",
    "critical": True,
}


async def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


async def exam_images_complete(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient, **overrides: Any
) -> dict[str, Any]:
    exam = await ok(await urg.post("/api/exams", json=exam_payload(**overrides)), 201)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.post(f"{base}/accept"))
    await ok(await rad.post(f"{base}/protocol", json={"text": "Scanner cérébral sans injection"}))
    await ok(await man.post(f"{base}/protocol/ack"))
    exam = await ok(await man.post(f"{base}/images-complete"))
    assert exam["status"] == "images_complete"
    return dict(exam)
