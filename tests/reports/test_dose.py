"""The dose from the scanner: a Radiation Dose SR stored into the exam fills the
report's dose line, compared with the site's reference levels (docs/reports.md
"The dose from the scanner")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb.samples import multipart, to_bytes
from server.archive.dose import NotADoseReport, read_dataset
from server.core.config import Settings
from server.core.models import Exam
from server.reports.dose import BadReferenceFile, assess, dose_text, load_levels
from tests.helpers import PASSWORD, dicom_patient
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok
from tests.reports.test_stroke_report import pdf_text

XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
# The reference levels of the tests' own file; not national values.
LEVELS = {
    "CT:HEAD": {"dlp_mgycm": 900, "ctdivol_mgy": 60, "source": "Test levels of the test suite"}
}


def code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def content(value_type: str, concept: Dataset, **fields: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([concept])
    for key, val in fields.items():
        setattr(item, key, val)
    return item


def num(concept: Dataset, value: float, unit: str) -> Dataset:
    measured = Dataset()
    measured.NumericValue = str(value)
    measured.MeasurementUnitsCodeSequence = Sequence([code(unit, unit, "UCUM")])
    return content("NUM", concept, MeasuredValueSequence=Sequence([measured]))


def container(concept: Dataset, children: list[Dataset]) -> Dataset:
    return content("CONTAINER", concept, ContinuityOfContent="SEPARATE",
                   ContentSequence=Sequence(children))  # fmt: skip


HEAD_PHANTOM = code("113690", "IEC Head Dosimetry Phantom")


def acquisition(region: str, ctdivol: float, dlp: float) -> Dataset:
    """One "CT Acquisition" of TID 10013, with its "CT Dose" (TID 10013 row 10)."""
    return container(
        code("113819", "CT Acquisition"),
        [
            content("TEXT", code("125203", "Acquisition Protocol"), TextValue="Crâne"),
            content("CODE", code("123014", "Target Region"),
                    ConceptCodeSequence=Sequence([code("69536005", region, "SCT")])),
            container(
                code("113829", "CT Dose"),
                [
                    num(code("113830", "Mean CTDIvol"), ctdivol, "mGy"),
                    content("CODE", code("113835", "CTDIw Phantom Type"),
                            ConceptCodeSequence=Sequence([HEAD_PHANTOM])),
                    num(code("113838", "DLP"), dlp, "mGy.cm"),
                ],
            ),
        ],
    )  # fmt: skip


def ct_rdsr(
    exam: dict[str, Any] | None, total: float, acqs: list[tuple[str, float, float]]
) -> Dataset:
    """A CT Radiation Dose SR (TID 10011) as a scanner sends it after the images."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = XRAY_DOSE_SR
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = exam["study_instance_uid"] if exam else generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.SeriesNumber, ds.InstanceNumber = 999, 1
    ds.StudyDate, ds.StudyTime = "20261206", "101500"
    if exam:
        ds.AccessionNumber = exam["accession_number"]
        for key, value in dicom_patient(exam).items():
            setattr(ds, key, value)
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([code("113701", "X-Ray Radiation Dose Report")])
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    accumulated = container(
        code("113811", "CT Accumulated Dose Data"),
        [num(code("113813", "CT Dose Length Product Total"), total, "mGy.cm")],
    )
    ds.ContentSequence = Sequence([accumulated, *[acquisition(*a) for a in acqs]])
    return ds


async def stow(client: Any, ds: Dataset) -> None:
    body, ctype = multipart([to_bytes(ds)])
    resp = await client.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text


def settings_with_levels(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest, tmp_path: Path
) -> Settings:
    """With ``indirect`` parametrisation of ``settings``, a DRL_FILE holding those levels."""
    levels = getattr(request, "param", None)
    if levels is None:
        return make_settings()
    path = tmp_path / "drl.json"
    path.write_text(json.dumps(levels), encoding="utf-8")
    return make_settings(drl_file=path)


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest, tmp_path: Path
) -> Settings:
    return settings_with_levels(make_settings, request, tmp_path)


def test_the_figures_of_a_ct_dose_report() -> None:
    figures = read_dataset(ct_rdsr(None, 1234.5, [("Head", 55.2, 800.0), ("Neck", 12, 434.5)]))
    assert figures["kind"] == "ct" and figures["total_dlp_mgycm"] == 1234.5
    assert figures["acquisitions"] == [
        {"protocol": "Crâne", "target_region": "Head", "phantom": "IEC Head Dosimetry Phantom",
         "ctdivol_mgy": 55.2, "dlp_mgycm": 800.0},
        {"protocol": "Crâne", "target_region": "Neck", "phantom": "IEC Head Dosimetry Phantom",
         "ctdivol_mgy": 12.0, "dlp_mgycm": 434.5},
    ]  # fmt: skip
    other = ct_rdsr(None, 1, [])
    other.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    with pytest.raises(NotADoseReport):
        read_dataset(other)


async def test_the_scanner_dose_fills_the_report_without_levels(client_for: ClientFor) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    before = await ok(await rad.get(f"{base}/report"))
    assert before["radiation_dose"] is None and "[…]" in before["template"]["dose"]

    await stow(man, ct_rdsr(exam, 850, [("Head", 55, 850)]))
    report = await ok(await rad.get(f"{base}/report"))
    dose = report["radiation_dose"]
    assert dose["total_dlp_mgycm"] == 850 and dose["acquisitions"][0]["ctdivol_mgy"] == 55
    assert dose["reference"] is None  # no DRL_FILE: nothing is compared, nothing flagged
    assert report["template"]["dose"] == "PDL : 850 mGy.cm ; CTDIvol : 55 mGy (Head)"

    # A draft saved with the template's placeholder shows the scanner's line instead;
    # the placeholder stored still blocks the signature until the draft is saved.
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "dose": "PDL : […] mGy.cm"}))
    draft = await ok(await rad.get(f"{base}/report"))
    assert draft["dose"] == "PDL : 850 mGy.cm ; CTDIvol : 55 mGy (Head)"
    assert draft["dose_filled"] is True  # shown, not stored: the editor saves it
    refused = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
    error = refused.json()["error"]
    assert refused.status_code == 422 and error["code"] == "incomplete_report"
    assert [(f["field"], f["reason"]) for f in error["fields"]] == [("dose", "placeholder")]

    # The radiologist may still edit the line: what they typed stays.
    typed = "PDL : 850 mGy.cm ; CTDIvol : 55 mGy (acquisition unique)"
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "dose": typed}))
    kept = await ok(await rad.get(f"{base}/report"))
    assert kept["dose"] == typed and kept["dose_filled"] is False
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    signed = await ok(await urg.get(f"{base}/report"))
    assert signed["dose"] == typed and signed["radiation_dose"]["reference"] is None
    text = pdf_text((await urg.get(f"{base}/report.pdf")).content)
    assert "acquisition unique" in text and "niveau de r\xe9f\xe9rence" not in text


@pytest.mark.parametrize("settings", [LEVELS], indirect=True)
async def test_a_dose_above_the_reference_level_is_flagged(client_for: ClientFor) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    high = await exam_images_complete(urg, rad, man)
    low = await exam_images_complete(urg, rad, man, clinical_question="Chute, TC.")
    await stow(man, ct_rdsr(high, 1400, [("Head", 72.5, 1100), ("Neck", 20, 300)]))
    await stow(man, ct_rdsr(low, 700, [("Head", 45, 700)]))

    dose = (await ok(await rad.get(f"/api/exams/{high['id']}/report")))["radiation_dose"]
    assert dose["reference"] == {
        "key": "CT:HEAD", "dlp_mgycm": 900, "ctdivol_mgy": 60,
        "source": "Test levels of the test suite", "above": True, "exceeded": ["dlp", "ctdivol"],
    }  # fmt: skip
    under = (await ok(await rad.get(f"/api/exams/{low['id']}/report")))["radiation_dose"]
    assert under["reference"]["above"] is False and under["reference"]["exceeded"] == []

    for exam in (high, low):
        base = f"/api/exams/{exam['id']}"
        line = (await ok(await rad.get(f"{base}/report")))["template"]["dose"]
        await ok(await rad.put(f"{base}/report", json={**DRAFT, "dose": line}))
        await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    signed = await ok(await urg.get(f"/api/exams/{high['id']}/report"))
    assert signed["dose"] == "PDL : 1400 mGy.cm ; CTDIvol : 72,5 mGy (Head), 20 mGy (Neck)"
    assert signed["radiation_dose"]["reference"]["above"] is True
    text = pdf_text((await urg.get(f"/api/exams/{high['id']}/report.pdf")).content)
    assert "DOSE SUP\xc9RIEURE AU niveau de r\xe9f\xe9rence diagnostique" in text
    assert "Test levels of the test suite" in text
    text = pdf_text((await urg.get(f"/api/exams/{low['id']}/report.pdf")).content)
    assert "Dose inf\xe9rieure au niveau de r\xe9f\xe9rence diagnostique" in text


def test_a_projection_xray_dose_report_and_its_level(tmp_path: Path) -> None:
    ds = ct_rdsr(None, 1, [])
    dap = num(code("113722", "Dose Area Product Total"), 0.00025, "Gy.m2")
    ds.ContentSequence = Sequence([container(code("113702", "Accumulated X-Ray Dose Data"), [dap])])
    figures = read_dataset(ds)
    assert figures["kind"] == "xray" and figures["total_dap_mgycm2"] == 2500
    assert dose_text(figures) == "PDS : 2500 mGy.cm²"
    path = tmp_path / "drl.json"
    path.write_text(json.dumps({"dx": {"dap_mgycm2": 2000, "source": "S"}}), encoding="utf-8")
    exam = Exam(modality="DX", body_part="CHEST", protocol_id=None)
    assert assess(exam, figures, load_levels(path)) == {
        "key": "DX", "dap_mgycm2": 2000, "source": "S", "above": True, "exceeded": ["dap"],
    }  # fmt: skip


def test_the_most_specific_level_applies_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    figures = read_dataset(ct_rdsr(None, 1500, [("Head", 70, 1500)]))
    path = tmp_path / "drl.json"
    levels = {
        "CT:HEAD": {"dlp_mgycm": 1000, "source": "head"},
        "protocol:ct-head-stroke": {"dlp_mgycm": 2000, "source": "stroke protocol"},
    }
    path.write_text(json.dumps(levels), encoding="utf-8")
    stroke = Exam(modality="CT", body_part="HEAD", protocol_id="ct-head-stroke")
    plain = Exam(modality="CT", body_part="HEAD", protocol_id="ct-head")
    found = load_levels(path)
    assert assess(stroke, figures, found)["above"] is False  # type: ignore[index]
    assert assess(plain, figures, found)["above"] is True  # type: ignore[index]
    assert assess(Exam(modality="CT", body_part="CHEST"), figures, found) is None
    bad = tmp_path / "bad.json"
    for text in ('{"CT": {"dlp_mgycm": -1, "source": "x"}}', '{"CT": {"dlp_mgycm": 1}}', "["):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(BadReferenceFile):
            load_levels(bad)
