"""The pieces every retrieval path shares, with values (docs/priors.md): the check of
each instance received (C-GET, C-MOVE, WADO-RS), the final status of a C-GET or C-MOVE,
the boundary of a WADO-RS answer, a DICOMweb PACS's settings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file

from server.accounts.service import AccountError
from server.priors import dicomweb_pacs, pacs
from server.priors.sources import Dicomweb

INS_OID = "1.2.250.1.213.1.4.8"


def instance(**attrs: str) -> bytes:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID = "1.2.3"
    ds.PatientID = "IPP-1"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def status_of(result: int | Dataset) -> int:
    return result if isinstance(result, int) else int(result.Status)


def test_the_checker_keeps_the_study_and_patient_asked_for_and_refuses_others() -> None:
    kept: list[bytes] = []
    check = pacs.Checker("1.2.3", pacs.Query("IPP-1"), kept.append)
    assert status_of(check(instance())) == pacs.SUCCESS
    assert status_of(check(instance(PatientID="IPP-2"))) == pacs.REFUSED_PATIENT
    assert status_of(check(instance(StudyInstanceUID="1.2.4"))) == pacs.REFUSED_PATIENT
    assert status_of(check(b"not DICOM")) == 0xC000
    assert (check.retrieved.kept, check.retrieved.mismatched, check.retrieved.failed) == (1, 2, 1)
    assert len(kept) == 1


def test_the_checker_of_an_ins_query_wants_its_issuer_too() -> None:
    check = pacs.Checker("1.2.3", pacs.Query("155077505678951", INS_OID), lambda _: None)
    same = {"PatientID": "155077505678951"}
    assert status_of(check(instance(**same, IssuerOfPatientID=INS_OID))) == pacs.SUCCESS
    assert status_of(check(instance(**same, IssuerOfPatientID="1.2.3.4"))) == 0xC001
    assert status_of(check(instance(**same))) == 0xC001  # no issuer at all


def test_an_instance_that_cannot_be_written_is_counted_failed() -> None:
    def full(_data: bytes) -> None:
        raise OSError(28, "No space left on device")

    check = pacs.Checker("1.2.3", pacs.Query("IPP-1"), full)
    assert status_of(check(instance())) == pacs.OUT_OF_RESOURCES
    assert check.retrieved.failed == 1


def answers(*codes: int, done: int = 0) -> list[tuple[Dataset, Dataset | None]]:
    out: list[tuple[Dataset, Dataset | None]] = []
    for code in codes:
        status = Dataset()
        status.Status = code
        status.NumberOfCompletedSuboperations = done
        out.append((status, None))
    return out


def test_the_final_status_of_a_retrieval() -> None:
    assert pacs.final_status(answers(0xFF00, 0x0000), pacs.Retrieved()) == 0
    assert pacs.final_status(answers(0xB000), pacs.Retrieved()) == 0xB000
    # We refused some ourselves: the counts say, not the PACS's failure.
    assert pacs.final_status(answers(0xC000), pacs.Retrieved(mismatched=1)) == 0xC000
    for responses, move_to, code in [
        ([], None, "no_answer"),
        ([(Dataset(), None)], None, "no_answer"),
        (answers(0xC000), None, "retrieve_failed"),
        (answers(0xA801), "TELEIMAGERIE", "move_refused"),
        (answers(0xC000), "TELEIMAGERIE", "move_refused"),  # Orthanc's answer there
        (answers(0xC000, done=3), "TELEIMAGERIE", "retrieve_failed"),  # it did send some
    ]:
        with pytest.raises(pacs.PacsError) as caught:
            pacs.final_status(responses, pacs.Retrieved(), move_to=move_to)
        assert caught.value.code == code
    with pytest.raises(pacs.PacsError, match="does not know our C-MOVE destination TI"):
        pacs.final_status(answers(0xA801), pacs.Retrieved(), move_to="TI")


def test_the_boundary_of_a_wado_rs_answer() -> None:
    related = 'multipart/related; type="application/dicom"; boundary="b-1"'
    assert dicomweb_pacs._boundary(related) == "b-1"
    assert dicomweb_pacs._boundary("multipart/related; boundary=xyz") == "xyz"
    for bad in ("application/dicom", "multipart/related", ""):
        with pytest.raises(pacs.PacsError):
            dicomweb_pacs._boundary(bad)


def test_a_dicomweb_pacs_settings_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    Dicomweb("https://pacs/dicom-web", "bearer", secret="t", ca_file=str(ca)).check()
    Dicomweb("http://pacs/dicom-web").check()
    for bad, words in [
        (Dicomweb("ftp://pacs/"), "http:// or https://"),
        (Dicomweb("https://u:p@pacs/"), "no credentials"),
        (Dicomweb("https://pacs/", "digest", secret="s"), "none, basic or bearer"),
        (Dicomweb("https://pacs/", "basic", secret="s"), "needs --user"),
        (Dicomweb("https://pacs/", "bearer"), "needs a secret"),
        (Dicomweb("http://pacs/", ca_file=str(ca)), "for an https:// URL"),
        (Dicomweb("https://pacs/", ca_file=str(tmp_path / "none.pem")), "not a readable file"),
    ]:
        with pytest.raises(AccountError, match=words):
            bad.check()
