"""Monthly stroke figures per site (docs/stroke.md "Figures"): alerts, onset to request,
request to first image, first image to report, p50 and p90."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from rooms.types import EventKind
from server.composition import app_context
from server.core.config import Settings
from server.exams.service import append_event
from server.exams.stroke import stroke_summary
from tests.conftest import Accounts
from tests.roster.conftest import new_exam

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
MONTH = datetime(2026, 11, 1, tzinfo=UTC)


def alert(onset: datetime) -> dict[str, Any]:
    return {"onset_at": onset.isoformat(), "onset_kind": "witnessed"}


async def test_monthly_figures_per_site(
    api_for: ClientFor, settings: Settings, accounts: Accounts
) -> None:
    # Three alerts at HOPA in November (onset to request 40, 60, 80 min; images after
    # 10, 20 min and one without; reports 15 and 25 min after the first image), one at
    # HOPB, one in December, and an ordinary request: only November's alerts count.
    async with app_context(settings) as app:
        async with app.db() as db:
            ids = []
            for i, (onset_min, image_min, report_min) in enumerate(
                ((40, 10, 15), (60, 20, 25), (80, None, None))
            ):
                at = MONTH + timedelta(days=3 + i, hours=2)
                exam_id = await new_exam(
                    app, db, at, stroke=alert(at - timedelta(minutes=onset_min))
                )
                ids.append(exam_id)
                if image_min is not None:
                    image_at = at + timedelta(minutes=image_min)
                    await append_event(db, exam_id, EventKind.IMAGES_RECEIVED, None, {}, image_at)
                    await append_event(db, exam_id, EventKind.IMAGES_RECEIVED, None, {},
                                       image_at + timedelta(minutes=1))  # fmt: skip
                    assert report_min is not None
                    await append_event(db, exam_id, EventKind.REPORT_SIGNED, None, {}, at,
                                       changes={"reported_at": image_at
                                                + timedelta(minutes=report_min)})  # fmt: skip
            at = MONTH + timedelta(days=10)
            await new_exam(app, db, at, "urg_b", stroke=alert(at - timedelta(minutes=30)))
            december = MONTH + timedelta(days=31)
            await new_exam(app, db, december, stroke=alert(december - timedelta(minutes=5)))
            await new_exam(app, db, at)
            await db.commit()

    coord = await api_for("coord")
    body = (await coord.get("/api/stats/stroke", params={"month": "2026-11"})).json()
    assert body["month"] == "2026-11"
    a = body["establishments"]["HOPA"]
    assert a["alerts"] == 3
    assert a["intervals"]["onset_to_request"] == {"n": 3, "p50_s": 3600.0, "p90_s": 4800.0}
    assert a["intervals"]["request_to_first_image"] == {"n": 2, "p50_s": 600.0, "p90_s": 1200.0}
    assert a["intervals"]["first_image_to_report"] == {"n": 2, "p50_s": 900.0, "p90_s": 1500.0}
    assert body["establishments"]["HOPB"]["alerts"] == 1
    assert body["all"]["alerts"] == 4
    only_a = await coord.get(
        "/api/stats/stroke", params={"month": "2026-11", "establishment": "hopa"}
    )
    assert set(only_a.json()["establishments"]) == {"HOPA"}
    december_body = (await coord.get("/api/stats/stroke", params={"month": "2026-12"})).json()
    assert december_body["all"]["alerts"] == 1

    for bad in ("2026-13", "2026", "novembre"):
        resp = await coord.get("/api/stats/stroke", params={"month": bad})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_parameter"
    rad = await api_for("rad")
    assert (await rad.get("/api/stats/stroke")).status_code == 403


def test_summary_of_no_alert() -> None:
    assert stroke_summary([]) == {
        "alerts": 0,
        "intervals": {
            name: {"n": 0, "p50_s": None, "p90_s": None}
            for name in ("onset_to_request", "request_to_first_image", "first_image_to_report")
        },
    }
