"""FHIR R4 resources of the platform (docs/fhir.md): Patient, ServiceRequest,
ImagingStudy, DiagnosticReport, the CapabilityStatement and OperationOutcome.

Each is built as a plain dict and validated by the ``fhir.resources`` model of its
type (its R4B models: R4B changed nothing in the fields used here), so that what
leaves is a valid resource or an error, never a half-valid one. The patient comes
from :func:`server.interfaces.identity.document_patient`; its id is derived from
the establishment and the IPP, so that one patient keeps one id across exams.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest

from server.core.models import Exam
from server.interfaces.identity import document_patient
from server.reports.formats import UID_NAMESPACE

FHIR_VERSION = "4.0.1"
MEDIA_TYPE = "application/fhir+json"
IPP_SYSTEM = "urn:teleimagerie:ipp:"  # + the establishment's code
ACCESSION_SYSTEM = "urn:teleimagerie:accession"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CONSENT_EXTENSION = "https://teleimagerie.fr/fhir/StructureDefinition/consent"
PRIORITY = {"emergency": "stat", "urgent": "urgent", "scheduled": "routine"}
URGENCY = {v: k for k, v in PRIORITY.items()} | {"asap": "urgent"}
GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
SEX = {v: k for k, v in GENDER.items()}
MODELS: dict[str, Any] = {
    "Patient": Patient,
    "ServiceRequest": ServiceRequest,
    "ImagingStudy": ImagingStudy,
    "DiagnosticReport": DiagnosticReport,
}


def _ts(value: Any) -> str:
    return str(value.isoformat()).replace("+00:00", "Z")


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as its model writes it (raises on anything invalid)."""
    others: dict[str, Any] = {
        "CapabilityStatement": CapabilityStatement,
        "OperationOutcome": OperationOutcome,
    }
    model: Any = MODELS.get(resource["resourceType"]) or others[resource["resourceType"]]
    checked: Any = model.model_validate(resource)
    return dict(checked.model_dump(mode="json", exclude_none=True))


def patient_id(establishment_id: int, ipp: str) -> str:
    return str(uuid.uuid5(UID_NAMESPACE, f"patient:{establishment_id}:{ipp}"))


def patient(exam: Exam) -> dict[str, Any]:
    who = document_patient(exam)
    identifiers = [{"system": IPP_SYSTEM + exam.establishment.code, "value": who.ipp}]
    ins = who.qualified_ins
    if ins is not None:
        identifiers.append({"system": f"urn:oid:{ins[1]}", "value": ins[0]})
    names: list[dict[str, Any]] = [
        {"use": "official", "family": who.birth_name, "given": who.first_names.split()}
    ]
    if who.used_name and who.used_name != who.birth_name:
        names.append({"use": "usual", "family": who.used_name})
    return validated(
        {
            "resourceType": "Patient",
            "id": patient_id(exam.establishment_id, who.ipp),
            "identifier": identifiers,
            "name": names,
            "gender": GENDER.get(who.sex, "unknown"),
            "birthDate": who.birth_date.isoformat(),
            "managingOrganization": {"display": exam.establishment.name},
        }
    )


def _subject(exam: Exam) -> dict[str, Any]:
    return {
        "reference": f"Patient/{patient_id(exam.establishment_id, document_patient(exam).ipp)}",
        "display": exam.patient_name.replace("^", " "),
    }


def _accession(exam: Exam) -> dict[str, Any]:
    return {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]
        },
        "system": ACCESSION_SYSTEM,
        "value": exam.accession_number,
    }


def service_request(exam: Exam) -> dict[str, Any]:
    if exam.status == "cancelled":
        status = "revoked"
    elif exam.status in ("reported", "delivered"):
        status = "completed"
    else:
        status = "active"
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": exam.id,
        "identifier": [_accession(exam)],
        "status": status,
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}],
        "priority": PRIORITY.get(exam.urgency, "routine"),
        "code": {
            "coding": [{"system": DCM, "code": exam.modality}],
            "text": f"{exam.modality} {exam.body_part}",
        },
        "subject": _subject(exam),
        "authoredOn": _ts(exam.created_at),
        "requester": {"display": exam.requester.display_name},
        "reasonCode": [{"text": exam.clinical_question}],
        "bodySite": [{"text": exam.body_part}],
        "extension": [{"url": CONSENT_EXTENSION, "valueBoolean": exam.consent}],
    }
    if exam.contraindications:
        body["note"] = [{"text": exam.contraindications}]
    return validated(body)


def imaging_study(exam: Exam) -> dict[str, Any]:
    status = {"cancelled": "cancelled", "requested": "registered"}.get(exam.status, "available")
    body: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": exam.id,
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{exam.study_instance_uid}"},
            _accession(exam),
        ],
        "status": status,
        "modality": [{"system": DCM, "code": exam.modality}],
        "subject": _subject(exam),
        "basedOn": [{"reference": f"ServiceRequest/{exam.id}"}],
        "description": f"{exam.modality} {exam.body_part}",
    }
    if exam.images_complete_at:
        body["started"] = _ts(exam.images_complete_at)
    return validated(body)


def diagnostic_report(exam: Exam, rendered: dict[str, Any]) -> dict[str, Any]:
    """The signed report's DiagnosticReport (server/reports/formats.py), tied to the
    other resources: the id is the exam's, the subject the Patient resource."""
    body = dict(rendered)
    body["id"] = exam.id
    body["subject"] = _subject(exam)
    body["basedOn"] = [{"reference": f"ServiceRequest/{exam.id}"}]
    body["imagingStudy"] = [{"reference": f"ImagingStudy/{exam.id}"}]
    return validated(body)


def exam_request(resource: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /api/exams`` from a ServiceRequest (docs/fhir.md "Requesting
    an exam"): the patient contained, the modality coded in DICOM, the body part in
    bodySite, the question in reasonCode, consent in its extension. Raises
    ValueError naming the first thing missing."""
    model = ServiceRequest.model_validate(resource)
    contained = [c for c in (model.contained or []) if c.get_resource_type() == "Patient"]
    if len(contained) != 1:
        raise ValueError("contained: one Patient with the IPP, name, birthDate and gender")
    pat = contained[0]
    if not isinstance(pat, Patient):  # a contained resource is parsed to its model
        raise ValueError("contained: one Patient")
    ipp = next((i.value for i in pat.identifier or [] if i.value), None)
    name = pat.name[0] if pat.name else None
    if not ipp or name is None or not name.family or pat.birthDate is None or not pat.gender:
        raise ValueError("the contained Patient needs identifier, name.family, birthDate, gender")
    modality = next(
        (c.code for c in (model.code.coding if model.code else []) or [] if c.code), None
    )
    body_part = next((b.text for b in model.bodySite or [] if b.text), None)
    question = next((r.text for r in model.reasonCode or [] if r.text), None)
    consent = next(
        (e.valueBoolean for e in model.extension or [] if e.url == CONSENT_EXTENSION), None
    )
    if modality is None or body_part is None or question is None or consent is None:
        raise ValueError(
            "code.coding (the DICOM modality), bodySite.text, reasonCode.text and the"
            " consent extension are required"
        )
    return {
        "patient": {
            "id": ipp,
            "name": f"{name.family}^{' '.join(g for g in name.given or [] if g)}".rstrip("^"),
            "birth_date": pat.birthDate.isoformat(),
            "sex": SEX.get(str(pat.gender), "U"),
        },
        "modality": modality,
        "body_part": body_part,
        "clinical_question": question,
        "urgency": URGENCY.get(str(model.priority or "routine"), "scheduled"),
        "consent": consent,
        "contraindications": model.note[0].text if model.note else None,
    }


def outcome(status: int, code: str, message: str) -> dict[str, Any]:
    """An OperationOutcome for an error (its issue code from the FHIR issue-type set)."""
    issue = {
        400: "invalid",
        401: "login",
        403: "forbidden",
        404: "not-found",
        405: "not-supported",
        409: "conflict",
        422: "invalid",
    }.get(status, "exception")
    return validated(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": issue,
                    "details": {"coding": [{"code": code}], "text": message},
                    "diagnostics": message,
                }
            ],
        }
    )


def capability_statement(base_url: str, now: str) -> dict[str, Any]:
    search = {
        "Patient": {"identifier": "token", "family": "string", "birthdate": "date"},
        "ServiceRequest": {"identifier": "token", "subject": "reference", "status": "token"},
        "ImagingStudy": {"identifier": "token", "subject": "reference"},
        "DiagnosticReport": {"identifier": "token", "subject": "reference"},
    }
    resources = []
    for kind, params in search.items():
        interactions = [{"code": "read"}, {"code": "search-type"}]
        if kind == "ServiceRequest":
            interactions.append({"code": "create"})
        resources.append(
            {
                "type": kind,
                "interaction": interactions,
                "searchParam": [{"name": p, "type": t} for p, t in params.items()],
            }
        )
    return validated(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": now,
            "kind": "instance",
            "software": {"name": "Téléimagerie"},
            "implementation": {"description": "Téléimagerie FHIR API", "url": base_url},
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {"description": "Bearer token or session cookie, as /api"},
                    "resource": resources,
                }
            ],
        }
    )
