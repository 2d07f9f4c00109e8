"""Destinations and reports for the interface tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from server.composition import core_context
from server.core.config import Settings
from server.interfaces.outbox import add_destination
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok


async def destination(
    settings: Settings, port: int, kinds: str = "oru,mdm", establishment: str = "HOPA"
) -> int:
    async with core_context(settings) as app, app.db() as db:
        dest = await add_destination(
            db,
            establishment=establishment,
            name="DPI",
            host="127.0.0.1",
            port=port,
            kinds=kinds,
            now=app.now(),
            receiving_application="DPI",
            receiving_facility="HOPA",
        )
        await db.commit()
        return dest.id


async def signed_exam(api_for: ClientFor) -> tuple[dict[str, Any], httpx.AsyncClient]:
    """An exam with a signed report; returns it and the radiologist's client."""
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    return exam, rad


async def settled(client: httpx.AsyncClient, exam_id: str, limit_s: float = 20.0) -> list[dict]:
    """The exam's deliveries once none is pending any more (a bound, not a timing assert)."""
    async with asyncio.timeout(limit_s):
        while True:
            items = (await ok(await client.get(f"/api/exams/{exam_id}/deliveries")))["deliveries"]
            if items and all(i["state"] in ("acknowledged", "failed") for i in items):
                return list(items)
            await asyncio.sleep(0.05)
