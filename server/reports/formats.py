"""Delivery formats of a signed report: PDF, FHIR R4 DiagnosticReport, DICOM PDF.

Each is rendered from the frozen canonical content alone (never from live
rows that may change later), with every date taken from the signature and
every identifier derived from the report's hash, so the same signed report
always gives the same bytes. All three carry the report's SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian

from server.reports.stroke import TIME_POINTS

PARIS = ZoneInfo("Europe/Paris")
ENCAPSULATED_PDF = EncapsulatedPDFStorage  # 1.2.840.10008.5.1.4.1.1.104.1 (PS3.4 B.5)
# A fixed namespace: UUIDv5 of (namespace, name) gives the same UID for the
# same report on every machine (PS3.5 B.2, 2.25 root).
UID_NAMESPACE = uuid.UUID("7d6f0c52-3f0e-5c36-9b8e-3a2f4f1e6c11")
IMPLEMENTATION_UID = UID("2.25." + str(uuid.uuid5(UID_NAMESPACE, "implementation").int))
PRIVATE_CREATOR = "TELEIMAGERIE 1.0"
SHA256_SYSTEM = "urn:teleimagerie:report-sha256"
SHA256_EXTENSION = "https://teleimagerie.fr/fhir/StructureDefinition/report-sha256"
CRITICAL_EXTENSION = "https://teleimagerie.fr/fhir/StructureDefinition/critical-finding"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"

# Characters common in French clinical text that the PDF core fonts lack.
_FALLBACK = str.maketrans(
    {
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "…": "...",
        "œ": "oe",
        "Œ": "OE",
        "€": "EUR",
        "\u202f": " ",
    }
)


def dicom_uid(name: str) -> str:
    return "2.25." + str(uuid.uuid5(UID_NAMESPACE, name).int)


def _latin1(text: str) -> str:
    return text.translate(_FALLBACK).encode("latin-1", "replace").decode("latin-1")


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _local(value: str) -> str:
    return _parse(value).astimezone(PARIS).strftime("%d/%m/%Y %H:%M (%Z)")


class _Pdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("helvetica", size=7)
        self.cell(0, 5, self.footer_text + f"   page {self.page_no()}/{{nb}}", align="C")


def render_pdf(content: dict[str, Any], sha256: str, addenda: list[dict[str, Any]]) -> bytes:
    """The printable report (fpdf2), byte-identical for the same signed content."""
    exam, patient, rep = content["exam"], content["patient"], content["report"]
    signer = content["signer"]
    pdf = _Pdf(format="A4")
    pdf.footer_text = _latin1(f"SHA-256 {sha256}")
    pdf.set_creation_date(_parse(content["signed_at"]))
    pdf.set_title(_latin1(f"Compte rendu {exam['modality']} {exam['body_part']}"))
    pdf.set_author(_latin1(signer["name"]))
    pdf.set_creator("Teleimagerie")
    pdf.set_producer("Teleimagerie")
    pdf.set_keywords(f"sha256:{sha256}")
    pdf.set_margins(18, 16, 18)
    pdf.add_page()

    def line(text: str, size: float = 10, style: str = "", height: float = 5) -> None:
        pdf.set_font("helvetica", style, size)
        pdf.multi_cell(0, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    def section(title: str, body: str) -> None:
        pdf.ln(2)
        line(title.upper(), 10, "B")
        line(body or "-", 10)

    est = exam["establishment"]
    line("Compte rendu de téléradiologie", 15, "B", 8)
    line(f"{est['name']} ({est['code']})", 10)
    pdf.ln(2)
    line(
        f"Patient : {patient['name']}   IPP : {patient['id']}   "
        f"Né(e) le {patient['birth_date']}   Sexe : {patient['sex']}",
        9,
    )
    line(
        f"Examen : {exam['modality']} {exam['body_part']}   Urgence : {exam['urgency']}   "
        f"N° d'accession : {exam['accession_number']}",
        9,
    )
    line(f"Demandé le {_local(exam['requested_at'])} par {exam['requester']['name']}", 9)
    points = content.get("time_points")
    if points:  # a stroke alert (docs/stroke.md "The report")
        pdf.ln(2)
        line("ALERTE AVC - délais de la filière", 10, "B")
        for name, label in TIME_POINTS.items():
            if name in points:
                line(f"{label} : {_local(points[name]) if points[name] else '-'}", 9)
    if rep["critical"]:
        pdf.ln(2)
        line("RÉSULTAT CRITIQUE : à communiquer sans délai au médecin demandeur", 11, "B")
    section("Indication", rep["indication"])
    section("Technique", rep["technique"])
    if rep.get("dose"):
        section("Dose délivrée", rep["dose"])
    ref = (content.get("radiation_dose") or {}).get("reference")
    if ref:  # the site's diagnostic reference level (docs/reports.md)
        verdict = "DOSE SUPÉRIEURE AU" if ref["above"] else "Dose inférieure au"
        line(f"{verdict} niveau de référence diagnostique ({ref['source']})", 9, "B")
    section("Résultats", rep["findings"])
    section("Conclusion", rep["conclusion"])
    pdf.ln(4)
    rpps = f" (RPPS {signer['rpps']})" if signer.get("rpps") else ""
    line(
        f"Signé électroniquement par {signer['name']}{rpps} le {_local(content['signed_at'])}",
        9,
        "I",
    )
    line(f"Empreinte SHA-256 du compte rendu : {sha256}", 8)
    for add in addenda:
        a, digest = add["content"], add["sha256"]
        section(f"Addendum n° {a['number']}", a["text"])
        line(
            f"Signé par {a['signer']['name']} le {_local(a['signed_at'])} - SHA-256 {digest}",
            8,
            "I",
        )
    return bytes(pdf.output())


def render_fhir(
    content: dict[str, Any], sha256: str, addenda: list[dict[str, Any]], pdf: bytes
) -> dict[str, Any]:
    """A FHIR R4 DiagnosticReport (status final, or appended once addenda exist)."""
    exam, patient, rep, signer = (content[k] for k in ("exam", "patient", "report", "signer"))
    practitioner: dict[str, Any] = {"display": signer["name"]}
    if signer.get("rpps"):
        practitioner["identifier"] = {"system": RPPS_SYSTEM, "value": signer["rpps"]}
    conclusion = rep["conclusion"]
    for add in addenda:
        conclusion += f"\n\nAddendum n° {add['content']['number']} : {add['content']['text']}"
    issued = addenda[-1]["content"]["signed_at"] if addenda else content["signed_at"]
    return {
        "resourceType": "DiagnosticReport",
        "id": str(uuid.uuid5(UID_NAMESPACE, f"fhir:{sha256}")),
        "meta": {"lastUpdated": issued.replace("Z", "+00:00")},
        "extension": [
            {"url": SHA256_EXTENSION, "valueString": sha256},
            {"url": CRITICAL_EXTENSION, "valueBoolean": rep["critical"]},
        ],
        "identifier": [
            {"system": SHA256_SYSTEM, "value": sha256},
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                    ]
                },
                "value": exam["accession_number"],
            },
        ],
        "status": "appended" if addenda else "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "18748-4",
                    "display": "Diagnostic imaging study",
                }
            ],
            "text": f"{exam['modality']} {exam['body_part']}",
        },
        "subject": {"identifier": {"value": patient["id"]}, "display": patient["name"]},
        "effectiveDateTime": exam["requested_at"].replace("Z", "+00:00"),
        "issued": issued.replace("Z", "+00:00"),
        "performer": [practitioner],
        "resultsInterpreter": [practitioner],
        "imagingStudy": [
            {
                "identifier": {
                    "system": "urn:dicom:uid",
                    "value": f"urn:oid:{exam['study_instance_uid']}",
                }
            }
        ],
        "conclusion": conclusion,
        "presentedForm": [
            {
                "contentType": "application/pdf",
                "language": "fr",
                "data": base64.b64encode(pdf).decode(),
                "size": len(pdf),
                "hash": base64.b64encode(
                    hashlib.sha1(pdf, usedforsecurity=False).digest()
                ).decode(),
                "title": "Compte rendu signé",
                "creation": issued.replace("Z", "+00:00"),
            }
        ],
    }


def _da_tm(value: str) -> tuple[str, str]:
    at = _parse(value)
    return at.strftime("%Y%m%d"), at.strftime("%H%M%S")


def render_dicom(
    content: dict[str, Any], sha256: str, addenda: list[dict[str, Any]], pdf: bytes
) -> bytes:
    """A DICOM Encapsulated PDF (PS3.3 A.45.1) in the exam's study, Part-10 bytes.

    One series per report (UID from the report hash); each version (the report,
    then each addendum) is a new instance whose UID comes from the newest hash.
    """
    exam, patient, signer = content["exam"], content["patient"], content["signer"]
    version_hash = addenda[-1]["sha256"] if addenda else sha256
    issued = addenda[-1]["content"]["signed_at"] if addenda else content["signed_at"]
    date, time = _da_tm(issued)
    study_date, study_time = _da_tm(exam["requested_at"])
    sop_uid = UID(dicom_uid(f"sop:{version_hash}"))

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "TELEIMAGERIE1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = patient["birth_date"].replace("-", "")
    ds.PatientSex = patient["sex"]
    ds.StudyInstanceUID = exam["study_instance_uid"]
    ds.StudyDate, ds.StudyTime = study_date, study_time
    ds.AccessionNumber = exam["accession_number"]
    ds.ReferringPhysicianName = exam["requester"]["name"]
    ds.StudyID = ""
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = dicom_uid(f"series:{sha256}")
    ds.SeriesNumber = 9001
    ds.SeriesDescription = "Compte rendu signé"
    ds.Manufacturer = "Téléimagerie"
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1 + len(addenda)
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"Compte rendu {exam['modality']} {exam['body_part']}"[:64]
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "18748-4", "LN"
    concept.CodeMeaning = "Diagnostic imaging study"
    ds.ConceptNameCodeSequence = [concept]
    ds.VerificationFlag = "VERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", sha256)  # the signed report's SHA-256
    block.add_new(0x11, "LO", version_hash)  # this version's (newest addendum's) hash
    block.add_new(0x12, "PN", signer["name"])

    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def report_sha256_of_dicom(ds: Dataset) -> str:
    """Read back the report hash a DICOM report carries (for checks and tests)."""
    block = ds.private_block(0x0011, PRIVATE_CREATOR)
    return str(block[0x10].value)
