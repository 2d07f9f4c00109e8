"""Delivery formats as values: deterministic bytes, one hash in all three."""

from __future__ import annotations

import base64
import copy
import io
import json
from typing import Any

import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from server.reports import formats as rf
from server.reports.service import canonical_bytes, find_templates, sha256_hex

CONTENT: dict[str, Any] = {
    "version": 1,
    "exam": {
        "id": "0b7c6c1e-1111-4a4a-9c9c-000000000001",
        "accession_number": "TI26052912345678",
        "study_instance_uid": "2.25.123456789012345678901234567890",
        "modality": "CT",
        "body_part": "HEAD",
        "urgency": "emergency",
        "requested_at": "2026-05-29T21:10:00Z",
        "clinical_question": "AVC ?",
        "establishment": {"code": "CHOLET", "name": "Centre hospitalier de Cholet"},
        "requester": {"id": 1, "name": "Dr Claire Martin", "rpps": "10101010101"},
    },
    "patient": {"id": "IPP-1", "name": "DUPONT^Jeanne", "birth_date": "1948-03-02", "sex": "F"},
    "report": {
        "indication": "Déficit brachio-facial gauche – AVC ?",
        "technique": "Scanner sans injection ; reconstructions « osseuses »",
        "findings": "Hypodensité temporale droite.\nPas d’hémorragie. Œdème modéré.",
        "conclusion": "AVC ischémique sylvien droit.",
        "dose": "PDL : 850 mGy.cm",
        "critical": True,
    },
    "signer": {"id": 7, "name": "Dr Paul Lefèvre", "rpps": "10003456789"},
    "signed_at": "2026-05-29T21:40:00Z",
}
DIGEST = sha256_hex(canonical_bytes(CONTENT))
ADDENDUM = {
    "content": {
        "version": 1,
        "report_sha256": DIGEST,
        "previous_sha256": DIGEST,
        "number": 1,
        "text": "Pas de thrombus.",
        "signer": CONTENT["signer"],
        "signed_at": "2026-05-29T22:05:00Z",
    },
    "sha256": "b" * 64,
}


def test_canonical_content_is_stable() -> None:
    shuffled = json.loads(json.dumps(CONTENT, sort_keys=False))
    shuffled["report"] = dict(reversed(list(shuffled["report"].items())))
    assert sha256_hex(canonical_bytes(shuffled)) == DIGEST
    changed = copy.deepcopy(CONTENT)
    changed["report"]["conclusion"] += "."
    assert sha256_hex(canonical_bytes(changed)) != DIGEST
    assert "é" in canonical_bytes(CONTENT).decode()  # UTF-8, not escaped


def test_pdf_is_byte_identical_and_carries_the_hash() -> None:
    pdf = rf.render_pdf(CONTENT, DIGEST, [])
    assert pdf == rf.render_pdf(copy.deepcopy(CONTENT), DIGEST, [])
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert f"sha256:{DIGEST}".encode() in pdf
    assert b"/CreationDate (D:20260529214000Z" in pdf  # the signature time, not the clock
    assert rf.render_pdf(CONTENT, DIGEST, [ADDENDUM]) != pdf


def test_fhir_diagnostic_report() -> None:
    pdf = rf.render_pdf(CONTENT, DIGEST, [])
    fhir = rf.render_fhir(CONTENT, DIGEST, [], pdf)
    assert fhir == rf.render_fhir(CONTENT, DIGEST, [], pdf)
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
    assert {"system": rf.SHA256_SYSTEM, "value": DIGEST} in fhir["identifier"]
    assert {"url": rf.SHA256_EXTENSION, "valueString": DIGEST} in fhir["extension"]
    assert fhir["code"]["coding"][0]["code"] == "18748-4"
    assert fhir["issued"] == "2026-05-29T21:40:00+00:00"
    assert fhir["performer"][0]["identifier"]["value"] == "10003456789"
    assert base64.b64decode(fhir["presentedForm"][0]["data"]) == pdf
    appended = rf.render_fhir(CONTENT, DIGEST, [ADDENDUM], pdf)
    assert appended["status"] == "appended" and "Pas de thrombus" in appended["conclusion"]
    assert appended["id"] == fhir["id"]  # same report, same resource


def test_dicom_encapsulated_pdf() -> None:
    pdf = rf.render_pdf(CONTENT, DIGEST, [])
    part10 = rf.render_dicom(CONTENT, DIGEST, [], pdf)
    assert part10 == rf.render_dicom(CONTENT, DIGEST, [], pdf)
    assert part10[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(part10))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == rf.ENCAPSULATED_PDF
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.SOPInstanceUID.startswith("2.25.") and len(ds.SOPInstanceUID) <= 64
    assert ds.StudyInstanceUID == CONTENT["exam"]["study_instance_uid"]
    assert str(ds.PatientName) == "DUPONT^Jeanne" and ds.PatientBirthDate == "19480302"
    assert ds.Manufacturer == "Téléimagerie"  # ISO_IR 192 round trip
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength] == pdf
    assert rf.report_sha256_of_dicom(ds) == DIGEST
    # A new version (an addendum) is a new instance of the same series.
    pdf2 = rf.render_pdf(CONTENT, DIGEST, [ADDENDUM])
    ds2 = pydicom.dcmread(io.BytesIO(rf.render_dicom(CONTENT, DIGEST, [ADDENDUM], pdf2)))
    assert ds2.SeriesInstanceUID == ds.SeriesInstanceUID
    assert ds2.SOPInstanceUID != ds.SOPInstanceUID and ds2.InstanceNumber == 2
    assert rf.report_sha256_of_dicom(ds2) == DIGEST


def test_templates_have_the_four_sections() -> None:
    every = find_templates(None, None)
    assert len({t["id"] for t in every}) == len(every)
    for tpl in every:
        assert {"technique", "findings", "conclusion", "title"} <= set(tpl)
        if tpl["modality"] in ("CT", "CR", "DX"):
            assert tpl.get("dose"), tpl["id"]
    assert find_templates("CT", "head")[0]["id"] == "ct-head"
    assert find_templates("PT", "HEAD")[0]["id"] == "generic"
