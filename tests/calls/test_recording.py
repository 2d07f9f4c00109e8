"""Recorded consults: enabled per establishment, announced, linked to the exam, scoped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import update

from server.composition import app_context
from server.core.config import Settings
from server.core.models import Establishment
from tests.calls.conftest import Join
from tests.conftest import Accounts

pytestmark = pytest.mark.slow

Client = Callable[[str], Awaitable[httpx.AsyncClient]]


async def enable_recording(settings: Settings, code: str) -> None:
    async with app_context(settings) as app, app.db() as db:
        await db.execute(
            update(Establishment)
            .where(Establishment.code == code)
            .values(settings={"record_calls": True})
        )
        await db.commit()


async def test_a_recorded_consult_is_announced_linked_and_scoped(
    settings: Settings,
    accounts: Accounts,
    open_room: Join,
    exam_id: str,
    client_for: Client,
) -> None:
    await enable_recording(settings, "HOPA")
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    await urg.join()
    await man.join()
    await man.wait_for(lambda c: bool(c.state and len(c.state["participants"]) == 2))
    assert man.state["recording"] is True  # type: ignore[index]
    await urg.wait_for(lambda c: sum(c.received.values()) >= 25)
    await man.wait_for(lambda c: sum(c.received.values()) >= 25)
    await urg.hangup()
    await man.hangup()
    await man.wait_for(lambda c: bool(c.state and not c.state["participants"]))

    site = await client_for("man_a")
    events = (await site.get(f"/api/exams/{exam_id}/events")).json()
    events = events["events"] if isinstance(events, dict) else events
    started = next(e for e in events if e["kind"] == "call.started")
    assert started["body"] == {"recording": True}

    listing = await site.get(f"/api/exams/{exam_id}/call-recordings")
    assert listing.status_code == 200
    recordings = listing.json()["recordings"]
    assert len(recordings) == 2  # one file per voice
    for rec in recordings:
        assert rec["ended_at"] is not None and rec["size"] > 0
        audio = await site.get(rec["url"])
        assert audio.status_code == 200
        assert audio.headers["content-type"] == "audio/ogg"
        assert audio.content[:4] == b"OggS"

    other = await client_for("urg_b")
    assert (await other.get(f"/api/exams/{exam_id}/call-recordings")).status_code == 404
    assert (await other.get(recordings[0]["url"])).status_code == 404


async def test_calls_are_not_recorded_unless_enabled(
    live_server: object,
    open_room: Join,
    exam_id: str,
    client_for: Client,
) -> None:
    urg = await open_room("urg_a")
    await urg.join()
    await urg.wait_for(lambda c: bool(c.state and c.state["participants"]))
    assert urg.state["recording"] is False  # type: ignore[index]
    await urg.hangup()
    site = await client_for("urg_a")
    listing = await site.get(f"/api/exams/{exam_id}/call-recordings")
    assert listing.json() == {"recordings": []}
