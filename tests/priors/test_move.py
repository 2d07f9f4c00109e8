"""Priors retrieved by C-MOVE (docs/priors.md "C-MOVE"), against a real Orthanc that
knows our Storage SCP as a move destination (its ``DicomModalities``): the PACS sends
the study to the SCP the web process's job loop runs (``PRIORS_MOVE_PORT``).

- accepting an exam fetches its relevant priors by C-MOVE, checked and stored as by
  C-GET, progress in the room;
- a study whose instances name another patient is refused whole and audited;
- a move destination the PACS does not know: the move refused, in words;
- an instance the PACS sends with no move under way is refused and audited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.core.audit import AuditEntry
from server.core.config import Settings
from server.testing import free_port
from tests.priors.helpers import (
    ApiFor,
    accepted,
    audit_rows,
    configure,
    days_ago,
    head_priors,
    hospital_priors,
    mixed_study,
    prior_failed,
    retrievals,
    settled,
    studies_seen,
)
from tests.priors.orthanc import (
    OUR_AE,
    Orthanc,
    ct_study,
    patient_attrs,
    running_orthanc,
)

MOVE_PORT = free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """The hospital PACS, with our AE a move destination at ``MOVE_PORT``."""
    yield from running_orthanc(tmp_path_factory, move_port=MOVE_PORT)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The job loop every 50 ms, our Storage SCP on ``MOVE_PORT`` as ``OUR_AE``."""
    return make_settings(
        priors_poll_s=0.05,
        priors_move_ae_title=OUR_AE,
        priors_move_bind="127.0.0.1",
        priors_move_port=MOVE_PORT,
    )


async def test_relevant_priors_are_moved_to_our_scp_checked_and_stored(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    patient = {"id": "IPP-MOVE-1", "name": "LEGRAND^Ana", "birth_date": "1951-01-01", "sex": "F"}
    head, mr, files = head_priors(tmp_path, patient, count=5, ct_days=200, mr_days=500)
    orthanc.load(files)
    await configure(settings, "HOPA", orthanc.dicom_port, retrieve="move")

    exam = await accepted(api_for, patient)
    rad, urg_b = await api_for("rad"), await api_for("urg_b")
    listing = await settled(rad, exam["id"])
    assert listing["pacs"] == {"status": "done", "reason": None, "message": None}
    assert hospital_priors(listing) == [(head, "done", 5), (mr, "done", 1)]
    steps = [(b["position"], b["total"], b["status"]) for b in await retrievals(rad, exam["id"])]
    assert steps == [(1, 2, "retrieving"), (1, 2, "done"), (2, 2, "retrieving"), (2, 2, "done")]
    assert await studies_seen(rad, head) == 1
    assert await studies_seen(urg_b, head) == 0
    ok = await audit_rows(settings, "priors.retrieve")
    assert [(r.outcome, r.detail["pacs"], r.detail["stored"]) for r in ok] == [
        ("ok", "HOSP_PACS", 5),
        ("ok", "HOSP_PACS", 1),
    ]
    assert await audit_rows(settings, "priors.unsolicited") == []


async def test_a_moved_study_with_another_patients_instance_is_refused_whole(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    patient = {"id": "IPP-MOVE-2", "name": "BRUN^Leo", "birth_date": "1972-02-02", "sex": "M"}
    intruder = {"id": "IPP-MOVE-8", "name": "GRIS^Eva", "birth_date": "1982-08-08", "sex": "F"}
    study, files = mixed_study(tmp_path, patient, intruder)
    orthanc.load(files)
    await configure(settings, "HOPA", orthanc.dicom_port, retrieve="move")

    exam = await accepted(api_for, patient)
    prior = await prior_failed(api_for, exam["id"], "patient_mismatch")
    assert prior["study_instance_uid"] == study
    (row,) = await audit_rows(settings, "priors.retrieve")
    assert (row.outcome, row.study_uid, row.detail["refused"]) == ("denied", study, 1)


class TestUnknownDestination:
    @pytest.fixture
    def settings(self, make_settings: Callable[..., Settings]) -> Settings:
        """Our SCP calls itself another AE title than the one the PACS knows."""
        return make_settings(
            priors_poll_s=0.05,
            priors_move_ae_title="NOT_REGISTERED",
            priors_move_bind="127.0.0.1",
            priors_move_port=free_port(),
        )

    async def test_a_move_destination_unknown_to_the_pacs_says_so(
        self, api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
    ) -> None:
        patient = {"id": "IPP-MOVE-3", "name": "VERT^Ida", "birth_date": "1963-03-03", "sex": "F"}
        study, files = ct_study(
            tmp_path / "s", patient_attrs(patient, StudyDate=days_ago(30), StudyDescription="TDM")
        )
        orthanc.load(files)
        await configure(settings, "HOPA", orthanc.dicom_port, retrieve="move")
        exam = await accepted(api_for, patient)
        prior = await prior_failed(api_for, exam["id"], "move_refused")
        assert prior["study_instance_uid"] == study
        assert "refused to send to our C-MOVE destination NOT_REGISTERED" in prior["message"]


async def test_an_instance_sent_with_no_move_under_way_is_refused_and_audited(
    api_for: ApiFor, settings: Settings, orthanc: Orthanc, tmp_path: Path
) -> None:
    """The PACS pushes an instance to our SCP on its own (a C-STORE nobody asked for,
    through Orthanc's REST ``/modalities/{name}/store``): refused, nothing stored, an
    audit row names the sender."""
    await api_for("rad")  # the app, and with it the job loop and our SCP, is running
    patient = {"id": "IPP-MOVE-4", "name": "ROSE^Max", "birth_date": "1944-04-04", "sex": "M"}
    study, files = ct_study(tmp_path / "push", patient_attrs(patient, StudyDate=days_ago(10)))
    orthanc_id = orthanc.http.post("/instances", content=files[0].read_bytes()).json()["ID"]
    resp = await asyncio.to_thread(
        orthanc.http.post, "/modalities/teleimagerie/store", json={"Resources": [orthanc_id]}
    )
    # Orthanc reports the failed C-STORE (the SCP refused it).
    assert resp.status_code != 200 or resp.json().get("FailedInstancesCount") == 1, resp.text
    rows: list[AuditEntry] = []
    for _ in range(200):  # the audit row is written from the SCP's thread, just after
        rows = await audit_rows(settings, "priors.unsolicited")
        if rows:
            break
        await asyncio.sleep(0.05)
    (row,) = rows
    assert (row.outcome, row.study_uid) == ("denied", study)
    assert row.detail["calling_ae"] == "HOSP_PACS"
    assert await studies_seen(await api_for("coord"), study) == 0
