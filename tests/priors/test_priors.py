"""Priors from our own archive (docs/api.md "Priors"): the patient's earlier exams of
the same establishment, listed for whoever reads the current exam, their images
readable by its radiologist, nothing across establishments or patients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from dicomweb.samples import instance, multipart
from tests.helpers import exam_payload, of_exam

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]
OTHER_PATIENT = {"id": "IPP-999", "name": "MARTIN^Paul", "birth_date": "1960-01-01", "sex": "M"}


async def exam_with_images(
    api_for: ApiFor, radiologist: str, site: str = "a", **payload: Any
) -> dict:
    urg, rad, man = (
        await api_for(f"urg_{site}"),
        await api_for(radiologist),
        await api_for(f"man_{site}"),
    )
    exam: dict[str, Any] = (await urg.post("/api/exams", json=exam_payload(**payload))).json()
    base = f"/api/exams/{exam['id']}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    body, ctype = multipart([instance(**of_exam(exam))])
    resp = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text
    return exam


async def studies_seen(client: httpx.AsyncClient, study_uid: str) -> int:
    resp = await client.get("/dicomweb/studies", params={"StudyInstanceUID": study_uid})
    assert resp.status_code in (200, 204), resp.text
    return len(resp.json()) if resp.status_code == 200 else 0


async def test_priors_listed_and_readable_by_the_current_radiologist(api_for: ApiFor) -> None:
    # The patient's earlier exam, read by another radiologist; an exam of another
    # patient; an exam of another establishment whose patient has the same identifier.
    prior = await exam_with_images(api_for, "rad2")
    other_patient = await exam_with_images(api_for, "rad2", patient=OTHER_PATIENT)
    other_site = await exam_with_images(api_for, "rad2", site="b")
    current = await exam_with_images(api_for, "rad")
    rad, rad2, urg_a, urg_b = [await api_for(u) for u in ("rad", "rad2", "urg_a", "urg_b")]

    resp = await rad.get(f"/api/exams/{current['id']}/priors")
    assert resp.status_code == 200, resp.text
    priors = resp.json()["priors"]
    assert [p["id"] for p in priors] == [prior["id"]]
    assert priors[0]["study_instance_uid"] == prior["study_instance_uid"]
    assert priors[0]["modality"] == "CT"
    # The prior's images are readable by the current exam's radiologist (for the
    # comparison), the other patient's and the other site's are not; the prior exam
    # itself stays out of their worklist and exam routes.
    assert await studies_seen(rad, prior["study_instance_uid"]) == 1
    assert await studies_seen(rad, other_patient["study_instance_uid"]) == 0
    assert await studies_seen(rad, other_site["study_instance_uid"]) == 0
    assert (await rad.get(f"/api/exams/{prior['id']}")).status_code == 404
    listed = [e["id"] for e in (await rad.get("/api/exams")).json()["exams"]]
    assert prior["id"] not in listed

    # The site's urgentist sees the same prior; the exam of another site is a 404
    # for the other site and for a radiologist it is not assigned to.
    resp = await urg_a.get(f"/api/exams/{current['id']}/priors")
    assert [p["id"] for p in resp.json()["priors"]] == [prior["id"]]
    assert (await urg_b.get(f"/api/exams/{current['id']}/priors")).status_code == 404
    assert (await rad2.get(f"/api/exams/{current['id']}/priors")).status_code == 404
    # The earlier exam has no prior of its own (the current one is later).
    resp = await rad2.get(f"/api/exams/{prior['id']}/priors")
    assert resp.json()["priors"] == []
    # The other site's exam has no prior: identifiers never match across sites.
    resp = await urg_b.get(f"/api/exams/{other_site['id']}/priors")
    assert resp.json()["priors"] == []


async def test_priors_of_an_unknown_exam(api_for: ApiFor) -> None:
    rad = await api_for("rad")
    resp = await rad.get("/api/exams/00000000-0000-0000-0000-000000000000/priors")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
