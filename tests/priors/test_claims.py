"""Claiming the priors job of accepted exams (server/priors/retrieval.py): once per
exam whoever asks, only exams of establishments with a PACS, a lease that runs out is
taken over, and given up after three tries. Over the real database, no PACS needed
(the job itself is not run here: docs/priors.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from server.composition import app_context
from server.core.config import Settings
from server.priors.models import PriorFetch
from server.priors.retrieval import LEASE_S, claim_due
from server.priors.sources import set_source
from tests.helpers import exam_payload

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The app's own job loop does not come round again during the test."""
    return make_settings(priors_poll_s=3600)


async def accepted(api_for: ApiFor, site: str) -> str:
    urg, rad = await api_for(f"urg_{site}"), await api_for("rad")
    exam = (await urg.post("/api/exams", json=exam_payload())).json()
    assert (await rad.post(f"/api/exams/{exam['id']}/accept")).status_code == 200
    return str(exam["id"])


async def test_claims_once_per_exam_then_takes_over_an_abandoned_lease(
    api_for: ApiFor, settings: Settings
) -> None:
    async with app_context(settings) as app, app.db() as db:
        await set_source(app, db, "HOPA", ae="PACS", host="127.0.0.1", port=104, calling_ae="TI")
        await db.commit()
    mine = await accepted(api_for, "a")
    await accepted(api_for, "b")  # HOPB has no PACS
    urg = await api_for("urg_a")
    (await urg.post("/api/exams", json=exam_payload())).json()  # not accepted
    async with app_context(settings) as app:
        assert await claim_due(app) == [mine]
        assert await claim_due(app) == []  # claimed already
        # The worker holding it stopped: once the lease has run out, it is taken over.
        later = app.now() + timedelta(seconds=LEASE_S + 1)
        assert await claim_due(app, later) == [mine]
        async with app.read() as db:
            row = await db.scalar(select(PriorFetch).where(PriorFetch.exam_id == mine))
            assert row is not None and (row.status, row.attempts) == ("running", 2)
        # A third abandon gives it up, with a room event saying so.
        async with app.db() as db:
            await db.execute(update(PriorFetch).values(attempts=3))
            await db.commit()
        much_later = later + timedelta(seconds=LEASE_S + 1)
        assert await claim_due(app, much_later) == []
        async with app.read() as db:
            row = await db.scalar(select(PriorFetch).where(PriorFetch.exam_id == mine))
            assert row is not None and (row.status, row.reason) == ("failed", "abandoned")
    rad = await api_for("rad")
    events = (await rad.get(f"/api/exams/{mine}/events")).json()["events"]
    (event,) = [e for e in events if e["kind"] == "prior.retrieval"]
    assert (event["body"]["status"], event["body"]["reason"]) == ("failed", "abandoned")
