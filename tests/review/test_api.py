"""Peer review over the real server (docs/review.md, docs/api.md "Peer review"): a
review asked for at the signature goes to another radiologist, who reads the report
and scores it; a significant discrepancy reaches the author's browser channel; the
figures are the author's and the coordinators' only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from websockets.asyncio.client import connect

from dicomweb.samples import instance, multipart
from server.composition import app_context
from server.core.config import Settings
from server.core.models import User
from server.review.models import PeerReview
from server.testing import LiveServer
from tests.helpers import PASSWORD, exam_payload, of_exam
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok


async def user_ids(settings: Settings) -> dict[str, int]:
    async with app_context(settings) as app, app.db() as db:
        return {u.username: u.id for u in await db.scalars(select(User))}


async def signed(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient, **sign: Any
) -> dict[str, Any]:
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD, **sign}))
    return exam


async def test_a_requested_review_goes_to_another_radiologist_and_a_discrepancy_reaches_the_author(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg, rad, rad2, man, coord = [
        await client_for(u) for u in ("urg_a", "rad", "rad2", "man_a", "coord")
    ]
    ids = await user_ids(settings)
    exam = await signed(urg, rad, man, review_requested=True)
    [review] = (await ok(await rad2.get("/api/reviews")))["reviews"]
    assert review["exam_id"] == exam["id"] and review["reason"] == "requested"
    assert (review["author_id"], review["reviewer_id"]) == (ids["rad"], ids["rad2"])
    assert (await ok(await rad.get("/api/reviews")))["reviews"] == []  # not the author's
    # The reviewer reads the signed report; the author, the site's staff cannot.
    got = await ok(await rad2.get(f"/api/reviews/{review['id']}"))
    assert got["report"]["conclusion"] == DRAFT["conclusion"]
    assert (await rad.get(f"/api/reviews/{review['id']}")).status_code == 404
    assert (await urg.get(f"/api/reviews/{review['id']}")).status_code == 403
    # Only the reviewer scores; a comment is needed from 2 up; once.
    assert (
        await rad.post(f"/api/reviews/{review['id']}/score", json={"score": "1"})
    ).status_code == 404
    bad = await rad2.post(f"/api/reviews/{review['id']}/score", json={"score": "3b"})
    assert bad.status_code == 422
    async with connect(
        f"{live_server.ws_url}/ws/notifications",
        additional_headers={"Authorization": rad.headers["Authorization"]},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        scored = await ok(
            await rad2.post(
                f"/api/reviews/{review['id']}/score",
                json={"score": "3b", "comment": "Occlusion M2 gauche non décrite"},
            )
        )
        assert scored["score"] == "3b"

        async def discrepancy() -> dict[str, Any]:
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("kind") == "review.discrepancy":
                    return frame

        frame = await asyncio.wait_for(discrepancy(), 10)
    assert frame["exam"]["id"] == exam["id"]
    assert frame["body"]["score"] == "3b"
    again = await rad2.post(f"/api/reviews/{review['id']}/score", json={"score": "1"})
    assert again.status_code == 409
    # The month's figures: the author's and the coordinators' only.
    month = datetime.now(UTC).strftime("%Y-%m")
    query = {"month": month, "radiologist": ids["rad"]}
    mine = await ok(await rad.get("/api/review-figures", params=query))
    assert mine["scores"]["3b"] == 1 and mine["scores"]["total"] == 1
    assert (await ok(await coord.get("/api/review-figures", params=query)))["scores"] == mine[
        "scores"
    ]
    for other in (rad2, urg):
        assert (await other.get("/api/review-figures", params=query)).status_code == 403
    assert (await rad.get("/api/review-figures", params={"month": "2026-13"})).status_code == 422


async def test_no_review_unless_drawn_or_asked_and_none_available_stays_unassigned(
    client_for: ClientFor, settings: Settings
) -> None:
    urg, rad, man, coord = [await client_for(u) for u in ("urg_a", "rad", "man_a", "coord")]
    # PEER_REVIEW_SHARE of the tests' settings is the default 5 %: find out which of
    # the signed exams the draw picks and check that exactly those have a review.
    from server.review.policy import drawn

    exams = [await signed(urg, rad, man) for _ in range(3)]
    async with app_context(settings) as app, app.db() as db:
        reviewed = set(await db.scalars(select(PeerReview.exam_id)))
        expected = {
            e["id"]
            for e in exams
            if drawn(e["id"], settings.peer_review_share, settings.peer_review_seed)
        }
        assert reviewed == expected
        # rad2 leaves: a review asked for now has nobody but the author to go to.
        rad2 = await db.scalar(select(User).where(User.username == "rad2"))
        assert rad2 is not None
        rad2.active = False
        await db.commit()
    exam = await signed(urg, rad, man, review_requested=True)
    listed = (await ok(await coord.get("/api/reviews")))["reviews"]
    [waiting] = [r for r in listed if r["exam_id"] == exam["id"]]
    assert waiting["reviewer_id"] is None
    assert listed[0]["reviewer_id"] is None  # the unassigned first


async def test_the_reviewer_reads_the_exams_images_once_assigned_and_no_other_radiologist(
    client_for: ClientFor, settings: Settings
) -> None:
    """A second reading needs the images: the reviewer may read the exam's study through
    DICOMweb from the moment the review is theirs; before it, and for anyone else not
    in the exam's scope, the study stays out of sight."""
    urg, rad, rad2, man = [await client_for(u) for u in ("urg_a", "rad", "rad2", "man_a")]
    exam = await ok(await urg.post("/api/exams", json=exam_payload()), 201)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.post(f"{base}/accept"))
    await ok(await rad.post(f"{base}/protocol", json={"text": "Scanner cérébral sans injection"}))
    await ok(await man.post(f"{base}/protocol/ack"))
    body, ctype = multipart([instance(**of_exam(exam))])
    stored = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert stored.status_code == 200, stored.text
    await ok(await man.post(f"{base}/images-complete"))

    async def studies_seen(client: httpx.AsyncClient) -> int:
        params = {"StudyInstanceUID": exam["study_instance_uid"]}
        resp = await client.get("/dicomweb/studies", params=params)
        assert resp.status_code in (200, 204), resp.text
        return len(resp.json()) if resp.status_code == 200 else 0

    assert await studies_seen(rad2) == 0  # not their exam, no review yet
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(
        await rad.post(f"{base}/report/sign", json={"password": PASSWORD, "review_requested": True})
    )
    [review] = (await ok(await rad2.get("/api/reviews")))["reviews"]
    assert review["exam_id"] == exam["id"]
    got = await ok(await rad2.get(f"/api/reviews/{review['id']}"))
    assert got["exam"]["study_instance_uid"] == exam["study_instance_uid"]
    assert await studies_seen(rad2) == 1
    series = await rad2.get(f"/dicomweb/studies/{exam['study_instance_uid']}/series")
    assert series.status_code == 200 and series.json(), series.text
    # Another site's staff still do not see it.
    assert await studies_seen(await client_for("urg_b")) == 0
