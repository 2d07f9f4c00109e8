"""Priors from a DICOMweb PACS (docs/priors.md "DICOMweb"): a real Orthanc with its
DICOMweb plugin (Debian's orthanc-dicomweb), HTTP basic authentication on.

- accepting an exam searches the patient's studies with QIDO-RS and retrieves the
  relevant ones with WADO-RS, checked and stored as by C-GET, progress in the room;
- a study whose instances name another patient is refused whole and audited;
- wrong credentials give ``unauthorized``, a PACS that is down ``unreachable``, in words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from server.composition import app_context
from server.core.config import Settings
from server.priors.sources import Dicomweb, set_source
from server.testing import free_port
from tests.priors.helpers import (
    ApiFor,
    accepted,
    accepted_for_identity,
    audit_rows,
    by_ins,
    days_ago,
    head_priors,
    hospital_priors,
    job_failed,
    prior_failed,
    qualified_identity,
    retrievals,
    settled,
    studies_seen,
)
from tests.priors.orthanc import (
    WEB_PASSWORD,
    WEB_USER,
    Orthanc,
    ct_study,
    patient_attrs,
    running_orthanc,
)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    yield from running_orthanc(tmp_path_factory, dicomweb=True)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(priors_poll_s=0.05)


async def configure(settings: Settings, url: str, password: str = WEB_PASSWORD) -> None:
    async with app_context(settings) as app, app.db() as db:
        web = Dicomweb(url, "basic", WEB_USER, password)
        await set_source(app, db, "HOPA", dicomweb=web, timeout_s=10)
        await db.commit()


async def test_relevant_priors_are_searched_and_retrieved_over_dicomweb(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    patient = {"id": "IPP-WEB-1", "name": "CARON^Lise", "birth_date": "1949-09-09", "sex": "F"}
    head, mr, files = head_priors(tmp_path, patient, count=4, ct_days=150, mr_days=400)
    old, old_files = ct_study(tmp_path / "old", patient_attrs(patient, StudyDate=days_ago(3000)))
    other = {"id": "IPP-WEB-9", "name": "NOEL^Guy", "birth_date": "1959-01-01", "sex": "M"}
    theirs, theirs_files = ct_study(
        tmp_path / "theirs", patient_attrs(other, StudyDate=days_ago(9))
    )
    orthanc.load([*files, *old_files, *theirs_files])
    await configure(settings, orthanc.dicomweb_url)

    exam = await accepted(api_for, patient)
    rad, urg_b, coord = await api_for("rad"), await api_for("urg_b"), await api_for("coord")
    listing = await settled(rad, exam["id"])
    assert listing["pacs"] == {"status": "done", "reason": None, "message": None}
    assert hospital_priors(listing) == [(head, "done", 4), (mr, "done", 1)]
    steps = [(b["position"], b["total"], b["status"]) for b in await retrievals(rad, exam["id"])]
    assert steps == [(1, 2, "retrieving"), (1, 2, "done"), (2, 2, "retrieving"), (2, 2, "done")]
    assert await studies_seen(rad, head) == 1
    assert await studies_seen(urg_b, head) == 0
    for uid in (old, theirs):
        assert await studies_seen(coord, uid) == 0
    resp = await rad.get(f"/dicomweb/studies/{head}/series")
    assert resp.json()[0]["00201209"]["Value"] == [4]
    rows = await audit_rows(settings, "priors.retrieve")
    assert [(r.outcome, r.detail["pacs"]) for r in rows] == [("ok", orthanc.dicomweb_url)] * 2


async def test_a_study_with_another_patients_instance_is_refused_whole(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    """The patient's INS study holds one image of the same number in another identifier
    domain (another patient: IssuerOfPatientID differs). Orthanc cannot serve one study
    under two PatientIDs over WADO-RS (it answers 404 for such a study UID), so the
    mismatch here is the issuer's; the check is the same for both."""
    identity_id = await qualified_identity(settings, "IPP-WEB-2")
    study, files = ct_study(
        tmp_path / "mixed", {**by_ins(), "StudyDate": days_ago(60), "StudyDescription": "TDM"}
    )
    ds = dcmread(files[-1])
    ds.IssuerOfPatientID = "1.2.3.4.5"
    ds.save_as(files[-1], enforce_file_format=True)
    orthanc.load(files)
    await configure(settings, orthanc.dicomweb_url)

    exam = await accepted_for_identity(api_for, identity_id)
    prior = await prior_failed(api_for, exam["id"], "patient_mismatch")
    assert prior["study_instance_uid"] == study
    (row,) = await audit_rows(settings, "priors.retrieve")
    assert (row.outcome, row.study_uid, row.detail["refused"]) == ("denied", study, 1)


@pytest.mark.parametrize(
    ("where", "reason", "words"),
    [
        ("wrong_password", "unauthorized", "credentials (HTTP 401)"),
        ("down", "unreachable", "does not answer"),
    ],
)
async def test_wrong_credentials_or_a_pacs_down_say_so(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, where: str, reason: str, words: str
) -> None:
    if where == "down":  # nothing listens there
        await configure(settings, f"http://127.0.0.1:{free_port()}/dicom-web")
    else:
        await configure(settings, orthanc.dicomweb_url, password="not-the-password")
    patient = {"id": "IPP-WEB-3", "name": "MAS^Ines", "birth_date": "1988-08-08", "sex": "F"}
    exam = await accepted(api_for, patient)
    await job_failed(api_for, exam["id"], reason, words)
