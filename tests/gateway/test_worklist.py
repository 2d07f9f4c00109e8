"""Modality Worklist C-FIND with DCMTK's findscu (docs/gateway.md): each site's modalities
see that site's requested exams, with the attributes a scanner fills in."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from server.gateway.worklist import SITE_TIMEZONE
from tests.gateway.conftest import (
    ClientFor,
    Listener,
    dcmtk,
    exam_in_acquisition,
    requested_exam,
)
from tests.gateway.test_store import audit_rows

# What a scanner asks (a DCMTK text dump, made into a query with dump2dcm).
QUERY = """
(0008,0005) CS [ISO_IR 192]
(0008,0050) SH [{accession}]
(0008,0090) PN []
(0010,0010) PN [{name}]
(0010,0020) LO []
(0010,0030) DA []
(0010,0040) CS []
(0020,000d) UI []
(0032,1060) LO []
(0040,1001) SH []
(0040,1003) SH []
(0040,0100) SQ (Sequence with explicit length #=1)
  (fffe,e000) na (Item with explicit length #=7)
    (0008,0060) CS [{modality}]
    (0040,0001) AE []
    (0040,0002) DA [{date}]
    (0040,0003) TM []
    (0040,0007) LO []
    (0040,0009) SH []
    (0040,0020) CS []
  (fffe,e00d) na (ItemDelimitationItem for re-encoding)
(fffe,e0dd) na (SequenceDelimitationItem for re-encoding)
"""


async def worklist(listener: Listener, tmp_path: Path, calling: str, **keys: str) -> list[Dataset]:
    fields = {"accession": "", "name": "", "modality": "", "date": ""} | keys
    dump = tmp_path / "query.dump"
    dump.write_text(QUERY.format(**fields), encoding="utf-8")
    query = tmp_path / "query.dcm"
    made = await dcmtk("dump2dcm", str(dump), str(query))
    assert made.code == 0, made.out
    out = tmp_path / f"rsp-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    run = await dcmtk(
        "findscu", "-W", "-X", "-od", str(out), "-aet", calling, "-aec", "TELEIMAGERIE",
        "127.0.0.1", str(listener.port), str(query),
    )  # fmt: skip
    assert run.code == 0, run.out
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def local_time(exam: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(exam["times"]["requested_at"]).astimezone(SITE_TIMEZONE)


async def site_exams(client_for: ClientFor) -> dict[str, dict[str, Any]]:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    urg_b = await client_for("urg_b")
    patient = {"id": "IPP-7", "name": "LEFÈVRE^Zoé", "birth_date": "1990-07-14", "sex": "F"}
    exams = {
        "requested": await requested_exam(urg),
        "acquiring": await exam_in_acquisition(urg, rad, man, patient=patient),
        "mr": await requested_exam(urg, modality="MR", body_part="SPINE"),
        "cancelled": await requested_exam(urg),
        "other_site": await requested_exam(urg_b),
    }
    cancel = await urg.post(
        f"/api/exams/{exams['cancelled']['id']}/cancel", json={"reason": "patient transféré"}
    )
    assert cancel.status_code == 200, cancel.text
    return exams


async def test_worklist_shows_the_sites_scheduled_exams(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    exams = await site_exams(client_for)
    found = await worklist(listener, tmp_path, "CT_HOPA", modality="CT")
    by_accession = {ds.AccessionNumber: ds for ds in found}
    assert set(by_accession) == {
        exams["requested"]["accession_number"],
        exams["acquiring"]["accession_number"],
    }
    ds = by_accession[exams["acquiring"]["accession_number"]]
    assert str(ds.PatientName) == "LEFÈVRE^Zoé"  # UTF-8 (ISO_IR 192) end to end
    assert ds.PatientID == "IPP-7" and ds.PatientBirthDate == "19900714" and ds.PatientSex == "F"
    assert ds.StudyInstanceUID == exams["acquiring"]["study_instance_uid"]
    assert ds.RequestedProcedureDescription == "Scanner cérébral — alerte thrombolyse"
    assert ds.RequestedProcedureID == exams["acquiring"]["accession_number"]
    assert ds.RequestedProcedurePriority == "STAT"
    assert str(ds.ReferringPhysicianName) == "URG_A"
    [step] = ds.ScheduledProcedureStepSequence
    created = local_time(exams["acquiring"])
    assert step.Modality == "CT" and step.ScheduledStationAETitle == "CT_HOPA"
    assert step.ScheduledProcedureStepStartDate == created.strftime("%Y%m%d")
    assert step.ScheduledProcedureStepStartTime == created.strftime("%H%M%S")
    assert step.ScheduledProcedureStepDescription == ds.RequestedProcedureDescription
    assert step.ScheduledProcedureStepID == ds.AccessionNumber
    # A requested exam has no protocol yet: body part and modality say what it is.
    plain = by_accession[exams["requested"]["accession_number"]]
    assert plain.RequestedProcedureDescription == "CT HEAD"
    rows = await audit_rows(listener, "dicom.worklist")
    assert rows[0].detail == {"calling_ae": "CT_HOPA", "matches": 2}


async def test_worklist_matching_keys(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    exams = await site_exams(client_for)
    everything = await worklist(listener, tmp_path, "MR_HOPA")
    assert len(everything) == 3  # requested, acquiring, MR; not cancelled, not HOPB
    mr = await worklist(listener, tmp_path, "MR_HOPA", modality="MR")
    assert [ds.AccessionNumber for ds in mr] == [exams["mr"]["accession_number"]]
    named = await worklist(listener, tmp_path, "MR_HOPA", name="lef*")
    assert [ds.AccessionNumber for ds in named] == [exams["acquiring"]["accession_number"]]
    acc = exams["requested"]["accession_number"]
    assert len(await worklist(listener, tmp_path, "MR_HOPA", accession=acc)) == 1
    day = local_time(exams["mr"]).strftime("%Y%m%d")
    assert len(await worklist(listener, tmp_path, "MR_HOPA", date=f"{day}-{day}")) == 3
    assert len(await worklist(listener, tmp_path, "MR_HOPA", date="19900101-19901231")) == 0


async def test_a_site_never_sees_another_sites_worklist(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    exams = await site_exams(client_for)
    found = await worklist(listener, tmp_path, "CT_HOPB")
    assert [ds.AccessionNumber for ds in found] == [exams["other_site"]["accession_number"]]
    # Asking for a HOPA accession number by name gives nothing either.
    acc = exams["acquiring"]["accession_number"]
    assert await worklist(listener, tmp_path, "CT_HOPB", accession=acc) == []
    unknown = await dcmtk(
        "findscu", "-W", "-aet", "NOBODY", "-aec", "TELEIMAGERIE", "127.0.0.1",
        str(listener.port), "-k", "PatientName=*",
    )  # fmt: skip
    assert unknown.code != 0 and "Calling AE Title Not Recognized" in unknown.out
