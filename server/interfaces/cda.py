"""The French imaging report as an HL7 CDA R2 level 1 document (docs/hl7.md "The CDA
document"): the national header of the CI-SIS (ANS, "Volet structuration minimale
des documents de santé") and, as its body, the signed PDF (nonXMLBody).

Built with lxml from the frozen canonical content alone: the same report version
gives the same bytes. Ids are stable: the document's ``setId`` comes from the
report's SHA-256, each version's ``id`` from that hash and the version number;
version n+1 (an addendum) names version n in ``relatedDocument typeCode="RPLC"``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from server.interfaces.identity import DocumentPatient
from server.reports.formats import dicom_uid

NS = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LOINC_OID = "2.16.840.1.113883.6.1"
CCAM_OID = "1.2.250.1.213.2.5"
GENDER_OID = "2.16.840.1.113883.5.1"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
# Identifiers of the French health referentials (ANS, "Référentiel des OID").
PS_NATIONAL_ID_OID = "1.2.250.1.71.4.2.1"  # national id of a professional: 8 + RPPS
ORG_NATIONAL_ID_OID = "1.2.250.1.71.4.2.2"  # national id of a structure: 1 + FINESS
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"  # conformity with the CI-SIS header rules
DICOM_STUDY_CODE = ("113014", "1.2.840.10008.2.16.4", "Study")
GENDERS = {"M": "M", "F": "F"}


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(tag), {k.rstrip("_"): v for k, v in attrs.items()})


def cda_ts(value: str | datetime) -> str:
    """TS (HL7 v3 data types): UTC to the second with its offset."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def document_ids(report_sha256: str, version: int) -> tuple[str, str, str | None]:
    """(setId, this version's id, the id of the version it replaces): OIDs under 2.25
    derived from the report's hash (PS3.5 B.2's UUID-derived form)."""
    set_id = dicom_uid(f"cda-set:{report_sha256}")
    doc_id = dicom_uid(f"cda:{report_sha256}:{version}")
    parent = dicom_uid(f"cda:{report_sha256}:{version - 1}") if version else None
    return set_id, doc_id, parent


@dataclass(frozen=True)
class Establishment:
    code: str
    name: str
    finess: str | None


def _organisation(parent: etree._Element, tag: str, est: Establishment) -> etree._Element:
    org = _el(parent, tag)
    if est.finess:
        _el(org, "id", root=ORG_NATIONAL_ID_OID, extension="1" + est.finess)
    else:
        _el(org, "id", root=dicom_uid(f"establishment:{est.code}"), extension=est.code)
    _el(org, "name").text = est.name
    return org


def _professional(parent: etree._Element, tag: str, person: dict[str, Any]) -> None:
    """An assignedAuthor / assignedEntity: the RPPS as the national id (8 + RPPS)."""
    who = _el(parent, tag)
    if person.get("rpps"):
        _el(who, "id", root=PS_NATIONAL_ID_OID, extension="8" + str(person["rpps"]))
    else:
        _el(who, "id", nullFlavor="UNK")
    name = _el(_el(who, "assignedPerson"), "name")
    _el(name, "family").text = str(person["name"])


def build(
    *,
    content: dict[str, Any],
    sha256: str,
    addenda: list[dict[str, Any]],
    pdf: bytes,
    patient: DocumentPatient,
    establishment: Establishment,
    ccam: tuple[str, str] | None,
) -> bytes:
    """The CDA of one version of a signed report (version = number of addenda)."""
    exam = content["exam"]
    version = len(addenda)
    latest = addenda[-1]["content"] if addenda else content
    signed_at = cda_ts(latest["signed_at"])
    signer: dict[str, Any] = latest["signer"]
    set_id, doc_id, parent_id = document_ids(sha256, version)

    root = etree.Element(_q("ClinicalDocument"), nsmap={None: NS, "xsi": XSI})
    _el(root, "realmCode", code="FR")
    _el(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    _el(root, "templateId", root=CISIS_TEMPLATE)
    _el(root, "id", root=doc_id)
    _el(
        root,
        "code",
        code="18748-4",
        codeSystem=LOINC_OID,
        codeSystemName="LOINC",
        displayName="CR d'imagerie médicale",
    )
    _el(root, "title").text = f"Compte rendu d'imagerie : {exam['modality']} {exam['body_part']}"
    _el(root, "effectiveTime", value=signed_at)
    _el(root, "confidentialityCode", code="N", codeSystem=CONFIDENTIALITY_OID)
    _el(root, "languageCode", code="fr-FR")
    _el(root, "setId", root=set_id)
    _el(root, "versionNumber", value=str(version + 1))

    # recordTarget: the INS for a qualified identity only, the IPP always.
    role = _el(_el(root, "recordTarget"), "patientRole")
    ins = patient.qualified_ins
    if ins is not None:
        _el(role, "id", root=ins[1], extension=ins[0])
    _el(role, "id", root=dicom_uid(f"ipp:{establishment.code}"), extension=patient.ipp)
    person = _el(role, "patient")
    name = _el(person, "name")
    for first in patient.first_names.split(" ") if patient.first_names else [""]:
        _el(name, "given").text = first
    _el(name, "family", qualifier="BR").text = patient.birth_name
    if patient.used_name and patient.used_name != patient.birth_name:
        _el(name, "family", qualifier="SP").text = patient.used_name
    if patient.sex in GENDERS:
        _el(person, "administrativeGenderCode", code=patient.sex, codeSystem=GENDER_OID)
    else:
        _el(person, "administrativeGenderCode", code="UN", codeSystem=GENDER_OID)
    _el(person, "birthTime", value=patient.birth_date.strftime("%Y%m%d"))

    author = _el(root, "author")
    _el(author, "time", value=signed_at)
    _professional(author, "assignedAuthor", signer)

    custodian = _el(_el(root, "custodian"), "assignedCustodian")
    _organisation(custodian, "representedCustodianOrganization", establishment)

    legal = _el(root, "legalAuthenticator")
    _el(legal, "time", value=signed_at)
    _el(legal, "signatureCode", code="S")
    _professional(legal, "assignedEntity", signer)

    order = _el(_el(root, "inFulfillmentOf"), "order")
    _el(
        order,
        "id",
        root=dicom_uid(f"accession:{establishment.code}"),
        extension=exam["accession_number"],
    )

    event = _el(_el(root, "documentationOf"), "serviceEvent", classCode="ACT")
    _el(event, "id", root=exam["study_instance_uid"])
    if ccam is not None:
        _el(event, "code", code=ccam[0], codeSystem=CCAM_OID, displayName=ccam[1])
    _el(_el(event, "effectiveTime"), "low", value=cda_ts(exam["requested_at"]))

    if parent_id is not None:
        related = _el(root, "relatedDocument", typeCode="RPLC")
        parent = _el(related, "parentDocument")
        _el(parent, "id", root=parent_id)
        _el(parent, "setId", root=set_id)
        _el(parent, "versionNumber", value=str(version))

    encounter = _el(_el(root, "componentOf"), "encompassingEncounter")
    _el(_el(encounter, "effectiveTime"), "low", value=cda_ts(exam["requested_at"]))
    facility = _el(_el(encounter, "location"), "healthCareFacility")
    _organisation(facility, "serviceProviderOrganization", establishment)

    body = _el(_el(root, "component"), "nonXMLBody")
    text = _el(body, "text", mediaType="application/pdf", representation="B64")
    text.text = base64.b64encode(pdf).decode()
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
