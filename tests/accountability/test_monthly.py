"""The monthly site report over a seeded month: figures recomputed from the events,
the charts rendered (docs/accountability.md "Monthly site report")."""

from __future__ import annotations

import base64
import io
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image
from sqlalchemy import select

from server.accountability.charts import CHARTS
from server.accountability.sample import seed_month
from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.core.models import Establishment, Exam, ExamEvent, User
from server.exams.service import escalation_policy
from server.reports.service import Report
from tests.reports.helpers import ClientFor, ok

PARIS = ZoneInfo("Europe/Paris")
MONTH = "2026-10"  # ends on the change from summer time: the Paris month is not UTC's


async def _seed(settings: Settings) -> None:
    async with app_context(settings) as app, app.db() as db:
        ids = {
            u.username: u.id
            for u in (await db.scalars(select(User))).all()
            if u.username in ("urg_a", "urg_b", "rad")
        }
        est = {e.code: e.id for e in (await db.scalars(select(Establishment))).all()}
        policy = escalation_policy(settings)

        def paris(y: int, m: int, d: int) -> datetime:
            return datetime(y, m, d, tzinfo=PARIS).astimezone(UTC)

        for seed, code, urg, start, end, n in (
            (1, "HOPA", "urg_a", paris(2026, 10, 1), paris(2026, 11, 1), 150),
            (2, "HOPB", "urg_b", paris(2026, 10, 1), paris(2026, 11, 1), 40),  # another site
            (3, "HOPA", "urg_a", paris(2026, 9, 1), paris(2026, 10, 1), 30),  # the month before
            (4, "HOPA", "urg_a", paris(2026, 11, 1), paris(2026, 12, 1), 30),  # the month after
        ):
            await seed_month(
                db,
                establishment_id=est[code],
                requester_id=ids[urg],
                radiologist_id=ids["rad"],
                start=start,
                end=end,
                count=n,
                policy=policy,
                seed=seed,
            )
        await db.commit()


def _rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def _expected(settings: Settings, code: str) -> dict[str, Any]:
    """The figures, recomputed in Python from every event of the establishment."""
    policy = escalation_policy(settings)
    async with app_context(settings) as app, app.db() as db:
        rows = (
            await db.execute(
                select(Exam.id, Exam.modality, Exam.stroke_onset_kind, ExamEvent.kind, ExamEvent.at)
                .join(ExamEvent, ExamEvent.exam_id == Exam.id)
                .join(Establishment, Establishment.id == Exam.establishment_id)
                .where(Establishment.code == code)
            )
        ).all()
        critical = dict((await db.execute(select(Report.exam_id, Report.critical))).all())
    log: dict[str, dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    info: dict[str, tuple[str, bool]] = {}
    for exam_id, modality, stroke, kind, at in rows:
        log[exam_id][kind].append(at)
        info[exam_id] = (modality, stroke is not None)
    now = datetime.now(UTC)
    exams = []
    cancelled = 0
    for exam_id, kinds in log.items():
        requested = kinds["exam.requested"][0].astimezone(PARIS)
        if f"{requested:%Y-%m}" != MONTH:
            continue
        if kinds.get("exam.cancelled"):
            cancelled += 1
            continue

        def one(
            kind: str, latest: bool = False, kinds: dict[str, list[datetime]] = kinds
        ) -> datetime | None:
            times = sorted(kinds.get(kind, []))
            return (times[-1] if latest else times[0]) if times else None

        exams.append(
            {
                "id": exam_id,
                "modality": info[exam_id][0],
                "policy": policy.for_stroke() if info[exam_id][1] else policy,
                "critical": bool(critical.get(exam_id)) and one("report.signed") is not None,
                "requested": requested,
                "accepted": one("exam.accepted"),
                "protocol": one("protocol.proposed", latest=True),
                "protocol_ack": one("protocol.acknowledged", latest=True),
                "first_image": one("images.received"),
                "images_complete": one("exam.images_complete"),
                "signed": one("report.signed"),
                "acknowledged": one("exam.delivered"),
                "escalations": len(kinds.get("escalation.raised", [])),
            }
        )

    def delays(a: str, b: str, only: list[dict[str, Any]] | None = None) -> list[float]:
        return [
            (e[b] - e[a]).total_seconds()
            for e in (exams if only is None else only)
            if e[a] and e[b]
        ]

    stages = {}
    for name, a, b, target in (
        ("accept", "requested", "accepted", "ack_timeout_s"),
        ("protocol", "accepted", "protocol", None),
        ("first_image", "protocol", "first_image", None),
        ("report", "images_complete", "signed", "report_sla_s"),
        ("acknowledge", "signed", "acknowledged", None),
    ):
        values = delays(a, b)
        within = (
            sum(
                1
                for e in exams
                if e[a] and e[b] and (e[b] - e[a]).total_seconds() <= getattr(e["policy"], target)
            )
            if target
            else None
        )
        stages[name] = {
            "n": len(values),
            "p50_s": _rank(values, 50),
            "p90_s": _rank(values, 90),
            "p95_s": _rank(values, 95),
            "within_target": within,
        }
    missed = {}
    for name, a, b, target in (
        ("accept", "requested", "accepted", "ack_timeout_s"),
        ("protocol_ack", "protocol", "protocol_ack", "protocol_ack_timeout_s"),
        ("report", "images_complete", "signed", "report_sla_s"),
        ("critical", "signed", "acknowledged", "critical_ack_timeout_s"),
    ):
        missed[name] = sum(
            1
            for e in exams
            if e[a]
            and (name != "critical" or e["critical"])
            and ((e[b] or now) - e[a]).total_seconds() > getattr(e["policy"], target)
        )
    crit = [e for e in exams if e["critical"]]
    crit_delays = delays("signed", "acknowledged", crit)
    return {
        "exams": len(exams),
        "cancelled": cancelled,
        "by_modality": Counter(e["modality"] for e in exams),
        "by_hour": Counter(e["requested"].hour for e in exams),
        "by_weekday": Counter(e["requested"].weekday() for e in exams),
        "stages": stages,
        "missed": missed,
        "escalations": sum(e["escalations"] for e in exams),
        "critical": (len(crit), len(crit_delays), _rank(crit_delays, 50), _rank(crit_delays, 90)),
    }


async def test_monthly_figures_equal_the_events(api_for: ClientFor, settings: Settings) -> None:
    await _seed(settings)
    coord = await api_for("coord")
    doc = await ok(
        await coord.get("/api/stats/monthly", params={"establishment": "hopa", "month": MONTH})
    )
    want = await _expected(settings, "HOPA")
    f = doc["figures"]
    assert doc["establishment"]["code"] == "HOPA" and doc["month"] == MONTH
    assert want["exams"] > 100
    assert f["volumes"]["exams"] == want["exams"]
    assert f["volumes"]["cancelled"] == want["cancelled"] > 0
    assert f["volumes"]["by_modality"] == {
        m: want["by_modality"].get(m, 0) for m in f["volumes"]["by_modality"]
    }
    assert sum(f["volumes"]["by_modality"].values()) == want["exams"]
    assert f["volumes"]["by_hour"] == [want["by_hour"].get(h, 0) for h in range(24)]
    assert list(f["volumes"]["by_weekday"].values()) == [
        want["by_weekday"].get(d, 0) for d in range(7)
    ]
    for name, stage in want["stages"].items():
        got = f["stages"][name]
        assert {k: got[k] for k in stage} == stage, name
    assert {k: v["missed"] for k, v in f["deadlines"].items()} == want["missed"]
    assert all(v > 0 for v in want["missed"].values()), want["missed"]  # each one missed
    assert f["escalations"]["raised"] == want["escalations"]
    # Each missed deadline lists the escalations it raised, of its own reason.
    missed_report = [m for m in f["missed"] if m["deadline"] == "report"]
    assert missed_report and all(
        [x["reason"] for x in m["escalations"]] == ["report_breach"] for m in missed_report
    )
    crit = f["critical"]
    assert (
        crit["count"],
        crit["acknowledged"],
        crit["delays"]["p50_s"],
        crit["delays"]["p90_s"],
    ) == want["critical"]

    async with app_context(settings) as app, app.db() as db:
        audit = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "monthly.read"))
        ).all()
    assert [(a.username, a.detail) for a in audit] == [
        ("coord", {"month": MONTH, "establishment": "HOPA"})
    ]


def _chart_regions(pdf: bytes) -> list[Image.Image]:
    """Each image placed on the PDF's pages, cut out of the page rendered to pixels."""
    doc = pdfium.PdfDocument(pdf)
    crops = []
    for index in range(len(doc)):
        page = doc[index]
        scale = 2
        bitmap = page.render(scale=scale).to_pil().convert("RGB")
        height = page.get_height()
        for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
            left, bottom, right, top = obj.get_bounds()
            box = (left * scale, (height - top) * scale, right * scale, (height - bottom) * scale)
            crops.append(bitmap.crop(tuple(round(v) for v in box)))
            obj.close()
        page.close()
    doc.close()
    return crops


def _ink(image: Image.Image) -> float:
    """The share of pixels that are not (nearly) white."""
    grey = np.asarray(image.convert("L"))
    return float((grey < 235).mean())


def _has_bars(image: Image.Image) -> bool:
    """Whether the chart's bar colour (charts.BLUE, #2b6cb0) is painted."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    near = np.abs(pixels - np.array([0x2B, 0x6C, 0xB0])).max(axis=2) < 25
    return bool(near.sum() > 50)


async def test_monthly_pdf_charts_render(api_for: ClientFor, settings: Settings) -> None:
    await _seed(settings)
    coord = await api_for("coord")
    params = {"establishment": "HOPA", "month": MONTH}
    resp = await coord.get("/api/stats/monthly.pdf", params=params)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(resp.content))
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp
    regions = _chart_regions(resp.content)
    assert len(regions) == 5
    for region in regions:
        assert region.width > 100 and region.height > 100
        assert _ink(region) > 0.02 and _has_bars(region)
    # The page's PNG of one chart is the same drawing.
    png = await coord.get("/api/stats/monthly/charts/hour.png", params=params)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content)).convert("RGB")
    assert _has_bars(image)


async def test_an_empty_month_still_renders(api_for: ClientFor) -> None:
    coord = await api_for("coord")
    params = {"establishment": "HOPA", "month": "2020-02"}
    doc = await ok(await coord.get("/api/stats/monthly", params=params))
    assert doc["figures"]["volumes"]["exams"] == 0
    assert doc["figures"]["stages"]["report"]["p50_s"] is None
    assert (await coord.get("/api/stats/monthly.pdf", params=params)).status_code == 200


@pytest.mark.parametrize(
    ("user", "params", "status", "code"),
    [
        ("urg_a", {"establishment": "HOPA", "month": MONTH}, 403, "forbidden"),
        ("rad", {"establishment": "HOPA", "month": MONTH}, 403, "forbidden"),
        ("coord", {"establishment": "HOPA", "month": "2026-13"}, 400, "bad_parameter"),
        ("coord", {"establishment": "HOPA"}, 400, "bad_parameter"),
        ("coord", {"month": MONTH}, 400, "bad_parameter"),
        ("coord", {"establishment": "NOPE", "month": MONTH}, 400, "bad_parameter"),
    ],
)
async def test_monthly_refusals(
    api_for: ClientFor, user: str, params: dict[str, str], status: int, code: str
) -> None:
    client = await api_for(user)
    for url in (
        "/api/stats/monthly",
        "/api/stats/monthly.pdf",
        "/api/stats/monthly/charts/hour.png",
    ):
        resp = await client.get(url, params=params)
        assert resp.status_code == status and resp.json()["error"]["code"] == code, url


async def test_unknown_chart(api_for: ClientFor) -> None:
    coord = await api_for("coord")
    resp = await coord.get(
        "/api/stats/monthly/charts/pie.png", params={"establishment": "HOPA", "month": MONTH}
    )
    assert resp.status_code == 404


async def test_the_json_can_carry_the_charts(api_for: ClientFor, settings: Settings) -> None:
    await _seed(settings)
    coord = await api_for("coord")
    params = {"establishment": "HOPA", "month": MONTH}
    doc = await ok(await coord.get("/api/stats/monthly", params={**params, "charts": "png"}))
    assert "charts" not in await ok(await coord.get("/api/stats/monthly", params=params))
    assert sorted(doc["charts"]) == sorted(CHARTS)
    for uri in doc["charts"].values():
        assert uri.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert _has_bars(image.convert("RGB"))
    bad = await coord.get("/api/stats/monthly", params={**params, "charts": "svg"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_parameter"
