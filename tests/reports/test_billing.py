"""Billing: the calendar, supplements, prices, and a month's statement over HTTP."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest

from server.core.context import AppContext
from server.reports import billing
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok

TARIFFS = billing.load_tariffs()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_easter_and_bank_holidays() -> None:
    assert [billing.easter(y) for y in (2024, 2025, 2026, 2027)] == [
        date(2024, 3, 31),
        date(2025, 4, 20),
        date(2026, 4, 5),
        date(2027, 3, 28),
    ]
    days = billing.french_bank_holidays(2026)
    assert len(days) == 11
    assert {date(2026, 4, 6), date(2026, 5, 14), date(2026, 5, 25)} <= days  # Easter-based
    assert date(2026, 7, 14) in days and date(2026, 7, 15) not in days


@pytest.mark.parametrize(
    ("at", "codes"),
    [
        (utc(2026, 5, 12, 10, 0), []),  # Tuesday noon in Paris (UTC+2)
        (utc(2026, 5, 12, 17, 59), []),  # 19:59 local
        (utc(2026, 5, 12, 18, 0), ["U"]),  # 20:00 local: night starts
        (utc(2026, 5, 12, 5, 59), ["U"]),  # 07:59 local
        (utc(2026, 5, 12, 6, 0), []),  # 08:00 local: day again
        (utc(2026, 5, 16, 10, 0), ["F"]),  # Saturday
        (utc(2026, 5, 14, 10, 0), ["F"]),  # Ascension Thursday
        (utc(2026, 5, 14, 22, 0), ["U"]),  # holiday night: the highest supplement only
        (utc(2026, 12, 24, 23, 30), ["U"]),  # 00:30 on Christmas day, winter time
    ],
)
def test_supplements(at: datetime, codes: list[str]) -> None:
    assert [s["code"] for s in billing.supplements_for(at, TARIFFS)] == codes


def test_supplements_can_be_summed() -> None:
    summed = {**TARIFFS, "supplements": {**TARIFFS["supplements"], "combine": "sum"}}
    got = billing.supplements_for(utc(2026, 5, 16, 22, 0), summed)  # Saturday night
    assert [s["code"] for s in got] == ["U", "F"]


def test_price_splits_technical_and_intellectual() -> None:
    tech, intel = billing.price("CT", "head", utc(2026, 5, 16, 10, 0), TARIFFS)
    assert (tech["kind"], intel["kind"]) == ("technical", "intellectual")
    assert tech["ccam"] == intel["ccam"] == "ACQK001"
    assert tech["supplements"] == [] and tech["total_cents"] == tech["base_cents"]
    assert intel["total_cents"] == intel["base_cents"] + 1906
    assert billing.tariff_for("CT", "KNEE", TARIFFS)["body_parts"] == ["*"]
    with pytest.raises(LookupError):
        billing.tariff_for("PT", "HEAD", TARIFFS)


def test_month_bounds_are_local() -> None:
    assert billing.month_bounds("2026-05") == (utc(2026, 4, 30, 22), utc(2026, 5, 31, 22))
    assert billing.month_bounds("2026-12") == (utc(2026, 11, 30, 23), utc(2026, 12, 31, 23))


# (establishment's urgentist, radiologist, modality, body part, signing time UTC)
MONTH: list[tuple[str, str, str, str, datetime]] = [
    ("urg_a", "rad", "CT", "HEAD", utc(2026, 5, 4, 9, 30)),
    ("urg_a", "rad", "CT", "HEAD", utc(2026, 5, 4, 21, 15)),  # night
    ("urg_b", "rad2", "CR", "CHEST", utc(2026, 5, 8, 11, 0)),  # 8 May
    ("urg_a", "rad2", "MR", "HEAD", utc(2026, 5, 9, 14, 0)),  # Saturday
    ("urg_b", "rad", "CT", "ABDOMEN-PELVIS", utc(2026, 5, 14, 3, 0)),  # Ascension night
    ("urg_a", "rad", "DX", "CHEST", utc(2026, 5, 20, 12, 0)),
    ("urg_b", "rad2", "CT", "SPINE", utc(2026, 5, 25, 16, 0)),  # Whit Monday
    ("urg_a", "rad", "CT", "CHEST", utc(2026, 5, 31, 21, 30)),  # 23:30 local, still May
    ("urg_b", "rad", "CT", "HEAD", utc(2026, 5, 31, 22, 30)),  # 00:30 local, June
    ("urg_a", "rad2", "CR", "CHEST", utc(2026, 4, 30, 21, 59)),  # 23:59 local, April
]


async def test_a_month_of_activity_gives_matching_statements(
    api_for: ClientFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = {
        u: await api_for(u) for u in ("urg_a", "urg_b", "man_a", "man_b", "rad", "rad2", "coord")
    }
    clock = [utc(2026, 5, 1)]
    # The app reads time through AppContext.now: drive it like a month passing.
    monkeypatch.setattr(AppContext, "now", staticmethod(lambda: clock[0]))
    expected: list[dict[str, Any]] = []
    for urg, rad, modality, part, at in MONTH:
        clock[0] = at
        man = clients["man_a" if urg == "urg_a" else "man_b"]
        exam = await exam_images_complete(
            clients[urg], clients[rad], man, modality=modality, body_part=part
        )
        base = f"/api/exams/{exam['id']}"
        await ok(await clients[rad].put(f"{base}/report", json=DRAFT))
        await ok(await clients[rad].post(f"{base}/report/sign", json={"password": PASSWORD}))
        if billing.month_bounds("2026-05")[0] <= at < billing.month_bounds("2026-05")[1]:
            for act in billing.price(modality, part, at, TARIFFS):
                expected.append({**act, "est": "HOPA" if urg == "urg_a" else "HOPB", "rad": rad})

    coord = clients["coord"]
    doc = await ok(await coord.get("/api/billing/statement?month=2026-05"))
    assert len(doc["acts"]) == len(expected) == 16
    assert doc["totals"]["total_cents"] == sum(a["total_cents"] for a in expected)
    assert doc["totals"]["total_cents"] == sum(a["total_cents"] for a in doc["acts"])
    assert (
        doc["totals"]["technical_cents"] + doc["totals"]["intellectual_cents"]
        == (doc["totals"]["total_cents"])
    )
    assert sum(e["total_cents"] for e in doc["by_establishment"]) == doc["totals"]["total_cents"]
    codes = sorted(
        "+".join(s["code"] for s in a["supplements"])
        for a in doc["acts"]
        if a["kind"] == "intellectual"
    )
    assert codes == ["", "", "F", "F", "F", "U", "U", "U"]
    assert all(isinstance(a["total_cents"], int) for a in doc["acts"])

    # Per establishment: both kinds of its exams; per radiologist: their intellectual acts.
    hopa = await ok(await coord.get("/api/billing/statement?month=2026-05&establishment=hopa"))
    assert hopa["totals"]["total_cents"] == sum(
        a["total_cents"] for a in expected if a["est"] == "HOPA"
    )
    by_rad = await ok(await coord.get("/api/billing/statement?month=2026-05&radiologist=rad2"))
    assert {a["kind"] for a in by_rad["acts"]} == {"intellectual"}
    assert by_rad["totals"]["total_cents"] == sum(
        a["total_cents"] for a in expected if a["rad"] == "rad2" and a["kind"] == "intellectual"
    )

    # CSV: the same acts, and a TOTAL row equal to the JSON's.
    resp = await coord.get("/api/billing/statement?month=2026-05", headers={"Accept": "text/csv"})
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    acts, total = rows[:-1], rows[-1]
    assert total["act_id"] == "TOTAL" and len(acts) == 16
    assert (
        sum(int(r["total_cents"]) for r in acts)
        == int(total["total_cents"])
        == (doc["totals"]["total_cents"])
    )
    assert [int(r["act_id"]) for r in acts] == [a["id"] for a in doc["acts"]]

    june = await ok(await coord.get("/api/billing/statement?month=2026-06"))
    assert len(june["acts"]) == 2


async def test_statement_parameters_and_roles(api_for: ClientFor) -> None:
    coord, rad = await api_for("coord"), await api_for("rad")
    assert (await rad.get("/api/billing/statement?month=2026-05")).status_code == 403
    for query in (
        "",
        "?month=2026-13",
        "?month=may",
        "?month=2026-05&establishment=NOPE",
        "?month=2026-05&radiologist=coord",
    ):
        resp = await coord.get(f"/api/billing/statement{query}")
        assert resp.status_code == 400, query
        assert resp.json()["error"]["code"] == "bad_parameter"
    empty = await ok(await coord.get("/api/billing/statement?month=2026-05"))
    assert empty["acts"] == [] and empty["totals"]["total_cents"] == 0
