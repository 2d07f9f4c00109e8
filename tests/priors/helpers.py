"""What the priors tests share: the hospital PACS set for a site, an exam accepted,
the job's outcome waited for, what the room and the archive then show."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.priors.sources import set_source
from tests.helpers import exam_payload
from tests.priors.orthanc import AE_TITLE, OUR_AE, ct_study, one_file, patient_attrs

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def days_ago(days: int) -> str:
    """A StudyDate this many days before today (the exams are made today)."""
    return f"{date.today() - timedelta(days=days):%Y%m%d}"


async def configure(
    settings: Settings, establishment: str, port: int, ae: str = AE_TITLE, **kw: Any
) -> None:
    async with app_context(settings) as app, app.db() as db:
        await set_source(
            app, db, establishment, ae=ae, host="127.0.0.1", port=port, calling_ae=OUR_AE, **kw
        )
        await db.commit()


async def accepted(api_for: ApiFor, patient: dict[str, str], site: str = "a") -> dict[str, Any]:
    urg, rad = await api_for(f"urg_{site}"), await api_for("rad")
    resp = await urg.post("/api/exams", json=exam_payload(patient=patient))
    assert resp.status_code == 201, resp.text
    exam: dict[str, Any] = resp.json()
    assert (await rad.post(f"/api/exams/{exam['id']}/accept")).status_code == 200
    return exam


async def settled(client: httpx.AsyncClient, exam_id: str) -> dict[str, Any]:
    """The priors listing once the exam's job has ended (the loop runs it; this waits
    for its outcome, it does not time it)."""
    for _ in range(600):
        resp = await client.get(f"/api/exams/{exam_id}/priors")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if body["pacs"] and body["pacs"]["status"] != "running":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the priors job of {exam_id} did not end: {body}")


async def retrievals(client: httpx.AsyncClient, exam_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/exams/{exam_id}/events")
    assert resp.status_code == 200, resp.text
    return [e["body"] for e in resp.json()["events"] if e["kind"] == "prior.retrieval"]


async def studies_seen(client: httpx.AsyncClient, study_uid: str) -> int:
    resp = await client.get("/dicomweb/studies", params={"StudyInstanceUID": study_uid})
    assert resp.status_code in (200, 204), resp.text
    return len(resp.json()) if resp.status_code == 200 else 0


INS = "155077505678951"


async def qualified_identity(settings: Settings, ipp: str) -> int:
    """A qualified identity at HOPA with the INS ``INS`` (docs/patients.md): its id."""
    from server.core.models import Establishment
    from server.patients import service as patients
    from server.patients.service import IdentityStatus, Traits

    async with app_context(settings) as app, app.db() as db:
        site = await db.scalar(select(Establishment.id).where(Establishment.code == "HOPA"))
        assert site is not None
        traits = Traits(
            ipp=ipp,
            birth_name="FONTAINE",
            first_names="Jean",
            sex="M",
            birth_date=date(1955, 7, 1),
            status=IdentityStatus.QUALIFIED,
            ins=INS,
            ins_oid=patients.INS_NIR,
            birthplace_code="75056",
        )
        row, _, _ = await patients.upsert(db, site, patients.check(traits, date.today()), app.now())
        await db.commit()
        return row.id


def by_ins() -> dict[str, str]:
    """The patient of ``qualified_identity`` as the hospital group's PACS files them."""
    from server.patients import service as patients

    return {
        "PatientID": INS,
        "IssuerOfPatientID": patients.INS_NIR,
        "PatientName": "FONTAINE^Jean",
        "PatientBirthDate": "19550701",
        "PatientSex": "M",
    }


async def accepted_for_identity(api_for: ApiFor, identity_id: int) -> dict[str, Any]:
    urg, rad = await api_for("urg_a"), await api_for("rad")
    payload = exam_payload()
    payload["patient"] = {**payload["patient"], "identity_id": identity_id}
    resp = await urg.post("/api/exams", json=payload)
    assert resp.status_code == 201, resp.text
    exam: dict[str, Any] = resp.json()
    assert (await rad.post(f"/api/exams/{exam['id']}/accept")).status_code == 200
    return exam


async def audit_rows(settings: Settings, action: str) -> list[AuditEntry]:
    async with app_context(settings) as app, app.read() as db:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list((await db.scalars(query)).all())


def head_priors(
    folder: Path, patient: dict[str, str], count: int, ct_days: int, mr_days: int
) -> tuple[str, str, list[Path | bytes]]:
    """The patient's head CT of ``count`` slices and head MR (relevant to a head CT)
    and a chest radiograph (not relevant): the CT's and MR's study UIDs, the files."""
    head, head_files = ct_study(
        folder / "head",
        patient_attrs(patient, StudyDate=days_ago(ct_days), StudyDescription="TDM CRANE"),
        count=count,
    )
    mr, mr_file = one_file(
        "MR_small.dcm",
        patient_attrs(patient, StudyDate=days_ago(mr_days), StudyDescription="IRM CEREBRALE"),
    )
    _, chest_file = one_file("RG1_UNCR.dcm", patient_attrs(patient, StudyDate=days_ago(100)))
    return head, mr, [*head_files, mr_file, chest_file]


def hospital_priors(listing: dict[str, Any]) -> list[tuple[str, str, int]]:
    """The listing's priors from the hospital: study, retrieval state, instances."""
    return [
        (p["study_instance_uid"], p["retrieval"], p["instances"])
        for p in listing["priors"]
        if p["source"] == "hospital"
    ]


def mixed_study(
    folder: Path, patient: dict[str, str], intruder: dict[str, str]
) -> tuple[str, list[Path]]:
    """A study of ``patient`` in the PACS, and an image of ``intruder`` under the same
    StudyInstanceUID (a modality that reused a UID): the PACS sends both for it."""
    from pydicom import dcmread

    study, files = ct_study(
        folder / "mixed", patient_attrs(patient, StudyDate=days_ago(300), StudyDescription="TDM")
    )
    _, intruding = ct_study(folder / "intruder", patient_attrs(intruder, StudyDate=days_ago(300)))
    ds = dcmread(intruding[0])
    ds.StudyInstanceUID = study
    ds.save_as(intruding[0], enforce_file_format=True)
    return study, [*files, intruding[0]]


async def job_failed(
    api_for: Callable[[str], Awaitable[httpx.AsyncClient]], exam_id: str, reason: str, words: str
) -> None:
    """The exam's job failed with ``reason``, its message has ``words``, no prior from
    the hospital is listed, and the room had one event saying so."""
    rad = await api_for("rad")
    listing = await settled(rad, exam_id)
    assert listing["pacs"]["status"] == "failed"
    assert listing["pacs"]["reason"] == reason
    assert words in listing["pacs"]["message"]
    assert [p for p in listing["priors"] if p["source"] == "hospital"] == []
    (event,) = await retrievals(rad, exam_id)
    assert (event["status"], event["reason"]) == ("failed", reason)


async def prior_failed(
    api_for: Callable[[str], Awaitable[httpx.AsyncClient]], exam_id: str, reason: str
) -> dict[str, Any]:
    """The exam's one prior from the hospital failed with ``reason``, the room's last
    event says so, and nobody reads its study: the prior, for more checks."""
    rad = await api_for("rad")
    listing = await settled(rad, exam_id)
    (prior,) = [p for p in listing["priors"] if p["source"] == "hospital"]
    assert (prior["retrieval"], prior["reason"]) == ("failed", reason)
    last = (await retrievals(rad, exam_id))[-1]
    assert (last["status"], last["reason"]) == ("failed", reason)
    assert await studies_seen(await api_for("coord"), prior["study_instance_uid"]) == 0
    return prior
