"""Priors from the hospital's PACS (docs/priors.md), against a real Orthanc started by
this module and loaded with real DICOM files (pydicom's test files):

- accepting an exam fetches its relevant priors in the background (the web process's
  job loop, the memory engine): found by C-FIND, retrieved by C-GET, stored in the
  archive under no exam, listed as from the hospital, readable by the exam's
  radiologist and by nobody of another establishment, progress in the room;
- a study whose instances name another patient is refused whole and audited;
- a PACS that is down or refuses the association gives a failed state with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from tests.priors.helpers import (
    ApiFor,
    accepted,
    accepted_for_identity,
    by_ins,
    configure,
    days_ago,
    job_failed,
    mixed_study,
    qualified_identity,
    retrievals,
    settled,
    studies_seen,
)
from tests.priors.orthanc import (
    Orthanc,
    ct_study,
    one_file,
    orthanc_fixture,  # noqa: F401  (the module's PACS, ``orthanc``)
    patient_attrs,
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The job loop of the in-process app looks for due exams every 50 ms."""
    return make_settings(priors_poll_s=0.05)


async def test_relevant_priors_fetched_on_acceptance_and_listed_from_the_hospital(
    api_for: ApiFor,
    settings: Settings,
    orthanc: Orthanc,
    tmp_path: Path,
) -> None:
    patient = {"id": "IPP-PACS-1", "name": "LEROY^Anne", "birth_date": "1950-05-05", "sex": "F"}
    # The hospital's PACS: two head CTs of the patient within five years (relevant), a
    # chest radiograph (another modality and region), an MR of the head (another
    # modality, same region), a CT from 2015 (too old), a CT of another patient.
    recent, recent_files = ct_study(
        tmp_path / "recent",
        patient_attrs(patient, StudyDate=days_ago(280), StudyDescription="TDM CRANE"),
        count=4,
    )
    older, older_files = ct_study(
        tmp_path / "older", patient_attrs(patient, StudyDate=days_ago(1400), StudyDescription="TDM")
    )
    chest, chest_file = one_file("RG1_UNCR.dcm", patient_attrs(patient, StudyDate=days_ago(250)))
    mr, mr_file = one_file(
        "MR_small.dcm",
        patient_attrs(patient, StudyDate=days_ago(550), StudyDescription="IRM CEREBRALE"),
    )
    ancient, ancient_files = ct_study(
        tmp_path / "ancient", patient_attrs(patient, StudyDate=days_ago(365 * 8))
    )
    stranger = {"id": "IPP-PACS-9", "name": "MARTIN^Paul", "birth_date": "1960-01-01", "sex": "M"}
    theirs, theirs_files = ct_study(
        tmp_path / "theirs", patient_attrs(stranger, StudyDate=days_ago(280))
    )
    orthanc.load(recent_files + older_files + ancient_files + theirs_files + [chest_file, mr_file])
    await configure(settings, "HOPA", orthanc.dicom_port, max_studies=3)

    exam = await accepted(api_for, patient)
    rad, urg_a, urg_b, coord = [await api_for(u) for u in ("rad", "urg_a", "urg_b", "coord")]
    listing = await settled(rad, exam["id"])
    assert listing["pacs"] == {"status": "done", "reason": None, "message": None}
    hospital = [p for p in listing["priors"] if p["source"] == "hospital"]
    # Newest first: the recent CT, the MR of the head, the older CT.
    assert [p["study_instance_uid"] for p in hospital] == [recent, mr, older]
    assert [p["retrieval"] for p in hospital] == ["done"] * 3
    assert [p["instances"] for p in hospital] == [4, 1, 3]
    assert (
        hospital[0]["modality"] == "CT"
        and hospital[0]["study_date"] == (date.today() - timedelta(days=280)).isoformat()
    )
    assert hospital[0]["description"] == "TDM CRANE"

    # Progress in the room: each prior retrieving, then done, i/3.
    steps = [(b["position"], b["total"], b["status"]) for b in await retrievals(rad, exam["id"])]
    assert steps == [
        (1, 3, "retrieving"),
        (1, 3, "done"),
        (2, 3, "retrieving"),
        (2, 3, "done"),
        (3, 3, "retrieving"),
        (3, 3, "done"),
    ]

    # In the archive under no exam: readable by the exam's radiologist, the site and the
    # coordinators; not by another site; not filed into the exam (its own study is empty).
    for uid in (recent, mr, older):
        assert await studies_seen(rad, uid) == 1
        assert await studies_seen(urg_a, uid) == 1
        assert await studies_seen(urg_b, uid) == 0
    for uid in (chest, ancient, theirs):
        assert await studies_seen(coord, uid) == 0
    resp = await rad.get(f"/dicomweb/studies/{recent}/series")
    assert resp.status_code == 200
    assert resp.json()[0]["00201209"]["Value"] == [4]
    assert await studies_seen(rad, exam["study_instance_uid"]) == 0
    # Another radiologist does not read them.
    assert await studies_seen(await api_for("rad2"), recent) == 0
    # The patient's next exam at the other site sees nothing of it (identifiers are
    # per establishment, and HOPB has no PACS).
    other = await accepted(api_for, patient, site="b")
    resp = await urg_b.get(f"/api/exams/{other['id']}/priors")
    assert resp.json() == {"priors": [], "pacs": None}


async def test_instances_of_another_patient_refuse_the_study_and_are_audited(
    api_for: ApiFor,
    settings: Settings,
    orthanc: Orthanc,
    tmp_path: Path,
) -> None:
    patient = {"id": "IPP-PACS-2", "name": "BLANC^Marc", "birth_date": "1970-07-07", "sex": "M"}
    intruder = {"id": "IPP-PACS-8", "name": "NOIR^Luc", "birth_date": "1980-08-08", "sex": "M"}
    study, files = mixed_study(tmp_path, patient, intruder)
    orthanc.load(files)
    await configure(settings, "HOPA", orthanc.dicom_port)

    exam = await accepted(api_for, patient)
    rad, coord = await api_for("rad"), await api_for("coord")
    listing = await settled(rad, exam["id"])
    (prior,) = [p for p in listing["priors"] if p["source"] == "hospital"]
    assert prior["study_instance_uid"] == study
    assert prior["retrieval"] == "failed"
    assert prior["reason"] == "patient_mismatch"
    assert "another patient" in prior["message"]
    # Nothing of the study was kept, for anyone.
    assert await studies_seen(coord, study) == 0
    last = (await retrievals(rad, exam["id"]))[-1]
    assert (last["status"], last["reason"]) == ("failed", "patient_mismatch")
    async with app_context(settings) as app, app.read() as db:
        rows = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "priors.retrieve"))
        ).all()
    assert [(r.outcome, r.study_uid, r.exam_id) for r in rows] == [("denied", study, exam["id"])]
    assert rows[0].detail["refused"] == 1


@pytest.mark.parametrize(
    ("where", "reason", "words"),
    [
        ("down", "unreachable", "does not answer"),
        ("wrong_ae", "association_rejected", "refused the association"),
    ],
)
async def test_a_pacs_down_or_refusing_gives_a_failed_state(
    api_for: ApiFor,
    settings: Settings,
    orthanc: Orthanc,
    where: str,
    reason: str,
    words: str,
) -> None:
    from server.testing import free_port

    if where == "down":  # nothing listens there
        await configure(settings, "HOPA", free_port(), timeout_s=5)
    else:  # Orthanc checks the called AE title
        await configure(settings, "HOPA", orthanc.dicom_port, ae="NOT_THE_PACS")
    patient = {"id": "IPP-PACS-3", "name": "ROUX^Eve", "birth_date": "1990-09-09", "sex": "F"}
    exam = await accepted(api_for, patient)
    await job_failed(api_for, exam["id"], reason, words)
    rad = await api_for("rad")
    # The room and the app carry on: the exam moves on as before.
    body = {"text": "TDM cérébrale sans injection"}
    assert (await rad.post(f"/api/exams/{exam['id']}/protocol", json=body)).status_code == 200


async def test_a_qualified_identity_is_also_looked_up_by_its_ins(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    """Once the identity is qualified, the PACS is queried by the INS too (PatientID the
    matricule, IssuerOfPatientID its authority's OID): a study another site of the
    hospital group filed under the INS is found and retrieved; one under the same number
    from another identifier domain is not."""
    identity_id = await qualified_identity(settings, "IPP-PACS-4")
    found, files = ct_study(
        tmp_path / "ins", {**by_ins(), "StudyDate": days_ago(100), "StudyDescription": "TDM"}
    )
    elsewhere, other_files = ct_study(
        tmp_path / "elsewhere",
        {**by_ins(), "IssuerOfPatientID": "1.2.3.4.5", "StudyDate": days_ago(90)},
    )
    orthanc.load(files + other_files)
    await configure(settings, "HOPA", orthanc.dicom_port)
    exam = await accepted_for_identity(api_for, identity_id)
    assert exam["patient"]["id"] == "IPP-PACS-4"
    rad = await api_for("rad")
    listing = await settled(rad, exam["id"])
    hospital = [p for p in listing["priors"] if p["source"] == "hospital"]
    assert [(p["study_instance_uid"], p["retrieval"]) for p in hospital] == [(found, "done")]
    assert await studies_seen(rad, found) == 1
    assert await studies_seen(await api_for("coord"), elsewhere) == 0
