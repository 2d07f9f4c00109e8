"""C-ECHO and C-STORE through the gateway with DCMTK's own echoscu and storescu
(docs/gateway.md): images reach the archive and the exam room by the STOW-RS path."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

from pydicom import dcmread
from sqlalchemy import select

from dicomweb.samples import ct_series, instance
from server.core.audit import AuditEntry
from tests.gateway.conftest import ClientFor, Listener, dcmtk, exam_in_acquisition
from tests.helpers import of_exam

AEC = "TELEIMAGERIE"


def responses(out: str) -> dict[str, str]:
    """storescu -v: file name -> what answered it (the store response, or the
    missing presentation context)."""
    result: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if m := re.search(r"Sending file: (.+)$", line):
            current = Path(m.group(1).strip()).name
        elif current and (m := re.search(r"Received Store Response \((.+)\)", line)):
            result[current] = m.group(1)
        elif current and "No presentation context" in line:
            result[current] = "no presentation context"
    return result


async def audit_rows(listener: Listener, action: str, wait_for: int = 1) -> list[AuditEntry]:
    """The association's row is written when it is released, in the gateway's
    thread: storescu may exit a moment before it is committed."""
    for _ in range(100):
        async with listener.app.read() as db:
            rows = list(await db.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        if len(rows) >= wait_for:
            return rows
        await asyncio.sleep(0.05)
    return rows


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


async def test_echo_and_unknown_calling_ae(listener: Listener) -> None:
    port = str(listener.port)
    ok = await dcmtk("echoscu", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1", port)
    assert ok.code == 0, ok.out
    refused = await dcmtk("echoscu", "-aet", "INTRUDER", "-aec", AEC, "127.0.0.1", port)
    assert refused.code != 0 and "Calling AE Title Not Recognized" in refused.out
    wrong_called = await dcmtk("echoscu", "-aet", "CT_HOPA", "-aec", "PACS", "127.0.0.1", port)
    assert wrong_called.code != 0 and "Called AE Title Not Recognized" in wrong_called.out
    [row] = await audit_rows(listener, "dicom.association")
    assert row.outcome == "denied" and row.addr == "127.0.0.1"
    assert row.detail["calling_ae"] == "INTRUDER"
    assert row.detail["reason"] == "calling AE title not recognised"


async def test_host_restriction(listener: Listener) -> None:
    await listener.register("DX_HOPA", "HOPA", host="10.0.0.0/8")
    run = await dcmtk("echoscu", "-aet", "DX_HOPA", "-aec", AEC, "127.0.0.1", str(listener.port))
    assert run.code != 0 and "Calling AE Title Not Recognized" in run.out
    [row] = await audit_rows(listener, "dicom.association")
    assert row.detail["reason"] == "calling AE title not allowed from this address"


async def test_ct_series_reaches_archive_and_room(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    # The scanner took the exam from the worklist: its study, accession and patient.
    files = [
        write(tmp_path / f"ct{i:03d}.dcm", data)
        for i, data in enumerate(ct_series(200, size=128, **of_exam(exam)))
    ]
    run = await dcmtk(
        "storescu", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1", str(listener.port), *files
    )
    assert run.code == 0, run.out[-2000:]
    found = await rad.get(
        "/dicomweb/studies",
        params={"AccessionNumber": exam["accession_number"], "includefield": "00201208"},
    )
    [study] = found.json()
    assert study["00201208"]["Value"] == [200]
    # The pixel data is stored as sent, byte for byte.
    study_uid = study["0020000D"]["Value"][0]
    series = (await rad.get(f"/dicomweb/studies/{study_uid}/series")).json()
    series_uid = series[0]["0020000E"]["Value"][0]
    sent = dcmread(files[17])
    got = await rad.get(
        f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sent.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert got.status_code == 200 and sent.PixelData in got.content
    events = (await rad.get(f"/api/exams/{exam['id']}/events")).json()["events"]
    received = [e for e in events if e["kind"] == "images.received"]
    assert received and received[0]["body"]["series_uid"] == series_uid
    [row] = await audit_rows(listener, "dicom.store")
    assert row.outcome == "ok" and row.detail["stored"] == 200
    assert row.detail["calling_ae"] == "CT_HOPA"


async def test_bad_instances_are_refused_and_the_others_go_on(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    urg_b, man_b = [await client_for(u) for u in ("urg_b", "man_b")]
    exam = await exam_in_acquisition(urg, rad, man)
    other_site = await exam_in_acquisition(urg_b, rad, man_b)
    acc = exam["accession_number"]
    good = list(ct_series(4, size=64, **of_exam(exam)))
    corrupt = dcmread(io.BytesIO(good[0]))
    corrupt.SOPInstanceUID = corrupt.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    corrupt.Rows = 512  # the pixel data is far shorter than Rows x Columns
    no_study = dcmread(io.BytesIO(instance(**of_exam(exam))))
    del no_study.StudyInstanceUID
    files = [
        write(tmp_path / "good0.dcm", good[0]),
        write(tmp_path / "corrupt.dcm", _bytes(corrupt)),
        write(tmp_path / "good1.dcm", good[1]),
        write(tmp_path / "rtplan.dcm", instance("rtplan.dcm", AccessionNumber=acc)),
        write(tmp_path / "nostudy.dcm", _bytes(no_study)),
        write(tmp_path / "othersite.dcm", instance(AccessionNumber=other_site["accession_number"])),
        write(tmp_path / "good2.dcm", good[2]),
        write(tmp_path / "good3.dcm", good[3]),
    ]
    run = await dcmtk(
        "storescu", "-v", "-nh", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1",
        str(listener.port), *files,
    )  # fmt: skip
    got = responses(run.out)
    assert got == {
        "good0.dcm": "Success",
        "corrupt.dcm": "Error: CannotUnderstand",
        "good1.dcm": "Success",
        "rtplan.dcm": "no presentation context",  # refused at negotiation
        "nostudy.dcm": "Error: DataSetDoesNotMatchSOPClass",
        # Kept aside for a person to file: a warning, stored, never lost.
        "othersite.dcm": "Warning: CoercionOfDataElements",
        "good2.dcm": "Success",
        "good3.dcm": "Success",
    }, run.out
    [row] = await audit_rows(listener, "dicom.store")
    assert row.outcome == "failed" and row.detail["stored"] == 4 and row.detail["aside"] == 1
    assert row.detail["failed"] == {"0xC000": 1, "0xA900": 1}
    found = (await rad.get("/dicomweb/studies", params={"AccessionNumber": acc})).json()
    assert [s["00201208"]["Value"] for s in found] == [[4]]
    # Nothing reached the other hospital's exam.
    assert (await rad.get("/dicomweb/studies", params={"AccessionNumber": other_site[
        "accession_number"]})).json() == []  # fmt: skip


def _bytes(ds: Any) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


async def test_a_mismatching_instance_is_kept_aside_not_lost(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    # The exam's study and accession, another patient: a person must decide.
    wrong = {**of_exam(exam), "PatientID": "SOMEONE-ELSE", "PatientName": "MARTIN^Jean"}
    path = write(tmp_path / "wrong.dcm", instance(**wrong))
    run = await dcmtk(
        "storescu", "-v", "-nh", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1",
        str(listener.port), path,
    )  # fmt: skip
    assert run.code == 0 and responses(run.out) == {"wrong.dcm": "Warning: CoercionOfDataElements"}
    [row] = await audit_rows(listener, "dicom.store")
    assert row.detail["aside"] == 1 and row.detail["stored"] == 0
    groups = (await man.get("/api/reconciliation")).json()["groups"]
    assert [(g["reason"], g["source"], g["count"]) for g in groups] == [
        ("patient_mismatch", "dicom:CT_HOPA", 1)
    ]
    assert groups[0]["candidate_exam"]["id"] == exam["id"]
    # The instance is kept as sent, outside the archive's index.
    [kept] = (listener.app.settings.dicom_storage / "quarantine").glob("*.dcm")
    sent, got = dcmread(path), dcmread(kept)
    assert (got.SOPInstanceUID, got.PatientID) == (sent.SOPInstanceUID, "SOMEONE-ELSE")
    assert got.PixelData == sent.PixelData
    assert (
        await rad.get(f"/dicomweb/studies/{exam['study_instance_uid']}/metadata")
    ).status_code == 404


async def test_an_association_decides_filing_once_per_study_and_patient(
    listener: Listener, client_for: ClientFor, tmp_path: Path
) -> None:
    """The slices of a series share one filing decision for the association; a
    slice whose patient differs is decided afresh, and kept aside."""
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    access = listener.app.ingestor.access
    asked: list[str] = []
    real = access.authorize_store

    async def counted(principal: Any, attrs: Any) -> Any:  # the real decision, counted
        asked.append(attrs.patient_id)
        return await real(principal, attrs)

    access.authorize_store = counted  # type: ignore[method-assign]
    slices = list(ct_series(6, size=64, **of_exam(exam)))
    stray = dcmread(io.BytesIO(slices[3]))
    stray.PatientID, stray.PatientName = "SOMEONE-ELSE", "MARTIN^Jean"
    slices[3] = _bytes(stray)
    files = [write(tmp_path / f"s{i}.dcm", data) for i, data in enumerate(slices)]
    run = await dcmtk(
        "storescu", "-v", "-nh", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1",
        str(listener.port), *files,
    )  # fmt: skip
    got = responses(run.out)
    assert got.pop("s3.dcm") == "Warning: CoercionOfDataElements", run.out
    assert set(got.values()) == {"Success"}, run.out
    # Once for the exam's patient, once for the other; not once per slice.
    assert sorted(asked) == sorted([exam["patient"]["id"], "SOMEONE-ELSE"]), asked
    [row] = await audit_rows(listener, "dicom.store")
    assert row.detail["stored"] == 5 and row.detail["aside"] == 1
    found = await rad.get(
        "/dicomweb/studies",
        params={"AccessionNumber": exam["accession_number"], "includefield": "00201208"},
    )
    assert [s["00201208"]["Value"] for s in found.json()] == [[5]]
    # A second association asks again.
    again = await dcmtk(
        "storescu", "-aet", "CT_HOPA", "-aec", AEC, "127.0.0.1", str(listener.port), files[0]
    )
    assert again.code == 0 and len(asked) == 3
