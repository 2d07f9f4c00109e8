"""The structured stroke report (docs/stroke.md "The report"): the stroke template
preselected for an alert, the structured fields turned into text, the time points
sealed with the signature and printed in the PDF."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok

STRUCTURED: dict[str, Any] = {
    "haemorrhage": [],
    "side": "right",
    "aspects_regions": ["M2", "I", "M1"],
    "hyperdense_artery": True,
    "occlusion": ["m1"],
    "collaterals": "good",
    "perfusion": {"core_ml": 12, "penumbra_ml": 60},
}


def pdf_text(pdf: bytes) -> str:
    """The text drawn on the PDF's pages (fpdf2 compresses each content stream)."""
    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            out.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            continue
    return "".join(out)


def alert(minutes_ago: int = 70) -> dict[str, Any]:
    onset = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"onset_at": onset.isoformat(), "onset_kind": "witnessed"}


async def test_the_stroke_template_is_preselected_for_an_alert(client_for: ClientFor) -> None:
    urg, rad, man = await client_for("urg_a"), await client_for("rad"), await client_for("man_a")
    stroke = await exam_images_complete(urg, rad, man, stroke=alert())
    plain = await exam_images_complete(urg, rad, man)
    got = await ok(await rad.get(f"/api/exams/{stroke['id']}/report"))
    assert got["template"]["template_id"] == "ct-head-stroke"
    assert "ASPECTS" in got["template"]["findings"]
    got = await ok(await rad.get(f"/api/exams/{plain['id']}/report"))
    assert got["template"]["template_id"] == "ct-head"
    # The radiologist may still pick either: both are offered for a head CT.
    listed = await ok(await rad.get("/api/report-templates?modality=CT&body_part=HEAD"))
    assert {"ct-head", "ct-head-stroke"} <= {t["id"] for t in listed["templates"]}


async def test_structured_fields_write_the_text_and_the_pdf_shows_the_time_points(
    client_for: ClientFor,
) -> None:
    urg, rad, man = await client_for("urg_a"), await client_for("rad"), await client_for("man_a")
    exam = await exam_images_complete(urg, rad, man, stroke=alert())
    base = f"/api/exams/{exam['id']}"
    draft = {**DRAFT, "findings": "", "conclusion": "", "critical": False, "stroke": STRUCTURED}
    await ok(await rad.put(f"{base}/report", json=draft))
    report = await ok(await rad.get(f"{base}/report"))
    assert report["stroke"] == {**STRUCTURED, "perfusion": {"core_ml": 12.0, "penumbra_ml": 60.0}}
    assert report["findings"].splitlines() == [
        "Pas de saignement intracrânien.",
        "Score ASPECTS droit : 7/10, signes précoces d'ischémie : I (ruban insulaire), "
        "M1 (cortex M1), M2 (cortex M2).",
        "Signe de l'artère hyperdense droit.",
        "Occlusion : segment M1 de l'artère cérébrale moyenne droit.",
        "Circulation collatérale bonne.",
        "Perfusion : cœur de l'infarctus 12 mL, pénombre 60 mL, rapport de discordance 5.0.",
    ]
    assert report["conclusion"] == (
        "Pas de saignement. Occlusion segment M1 de l'artère cérébrale moyenne droit ; "
        "ASPECTS 7/10 ; cœur 12 mL / pénombre 60 mL."
    )
    # Text the radiologist typed is kept: only a blank section is written.
    typed = {**draft, "conclusion": "Occlusion M1 droite, thrombectomie à discuter."}
    await ok(await rad.put(f"{base}/report", json=typed))
    report = await ok(await rad.get(f"{base}/report"))
    assert (
        report["conclusion"] == typed["conclusion"] and "ASPECTS droit : 7/10" in report["findings"]
    )

    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    text = pdf_text((await urg.get(f"{base}/report.pdf")).content)
    assert "ALERTE AVC - d\xe9lais de la fili\xe8re" in text
    for label in ("D\xe9but des sympt\xf4mes", "Demande", "Prise en charge par le radiologue",
                  "Premi\xe8re image : -", "Compte rendu sign\xe9"):  # fmt: skip
        assert label in text, label
    assert "Score ASPECTS droit : 7/10" in text
    plain = await exam_images_complete(urg, rad, man)
    await ok(await rad.put(f"/api/exams/{plain['id']}/report", json=DRAFT))
    await ok(await rad.post(f"/api/exams/{plain['id']}/report/sign", json={"password": PASSWORD}))
    assert "ALERTE AVC" not in pdf_text(
        (await urg.get(f"/api/exams/{plain['id']}/report.pdf")).content
    )


async def test_bad_structured_fields_are_refused(client_for: ClientFor) -> None:
    urg, rad, man = await client_for("urg_a"), await client_for("rad"), await client_for("man_a")
    exam = await exam_images_complete(urg, rad, man, stroke=alert())
    base = f"/api/exams/{exam['id']}"
    for bad, field in (
        ({"aspects_regions": ["M7"]}, "stroke.aspects_regions.0"),
        ({"aspects_regions": ["M1", "M1"]}, "stroke.aspects_regions"),
        ({"perfusion": {"core_ml": -1, "penumbra_ml": 3}}, "stroke.perfusion.core_ml"),
        ({"occlusion": ["aorta"]}, "stroke.occlusion.0"),
    ):
        resp = await rad.put(f"{base}/report", json={**DRAFT, "stroke": {**STRUCTURED, **bad}})
        assert resp.status_code == 422, bad
        assert [f["field"] for f in resp.json()["error"]["fields"]] == [field]
    assert (await ok(await rad.get(f"{base}/report")))["status"] == "none"


async def test_an_alert_with_onset_unknown_prints_its_onset_line_without_a_time(
    client_for: ClientFor,
) -> None:
    urg, rad, man = await client_for("urg_a"), await client_for("rad"), await client_for("man_a")
    exam = await exam_images_complete(urg, rad, man, stroke={"onset_kind": "unknown"})
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "stroke": STRUCTURED}))
    signed = await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    assert signed["sha256"]
    text = pdf_text((await urg.get(f"{base}/report.pdf")).content)
    assert "ALERTE AVC - d\xe9lais de la fili\xe8re" in text
    assert "D\xe9but des sympt\xf4mes : -" in text
    assert "Derni\xe8re fois vu" not in text
    assert "Compte rendu sign\xe9 : -" not in text
