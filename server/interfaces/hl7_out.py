"""Outgoing HL7 v2.5 messages: the report as ORU^R01, the CDA document in MDM^T02/T10
(docs/hl7.md "Outbound").

Pure functions: the same inputs give the same message text, so a message sent
again after a lost acknowledgement is the same message (same MSH-10, same time in
MSH-7, same content). Segments are assembled from escaped fields and parsed by
python-hl7 (``hl7.parse``), which checks the structure and gives the text; its
escaping (HL7 v2.5 chapter 2, 2.7 "Use of escape sequences in text fields") is
applied to the ASCII parts, while the rest of the text goes as is in UTF-8
(MSH-18 ``UNICODE UTF-8``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import hl7

from server.interfaces.identity import DocumentPatient

VERSION = "2.5"
SENDING_APPLICATION = "TELEIMAGERIE"
CHARSET = "UNICODE UTF-8"
LOINC = "LN"
# The report's sections as LOINC observations (OBX-3), in the order of the report.
SECTIONS = (
    ("indication", "18785-6", "Indication de l'examen"),
    ("technique", "55111-9", "Technique"),
    ("findings", "18782-3", "Résultats"),
    ("conclusion", "19005-8", "Conclusion"),
    ("dose", "73569-6", "Dose délivrée"),
)
ADDENDUM = ("55107-7", "Addendum")
DOCUMENT = ("18748-4", "CR d'imagerie médicale")
# The exam's record (docs/accountability.md), when the establishment asks for it
# with the report: a local code, as no LOINC document code names such a dossier.
RECORD = ("RECORD", "Dossier d'examen (PDF/A)", "L")
INS_AUTHORITIES = {
    "1.2.250.1.213.1.4.8": "ASIP-SANTE-INS-NIR",
    "1.2.250.1.213.1.4.9": "ASIP-SANTE-INS-NIA",
    "1.2.250.1.213.1.4.10": "ASIP-SANTE-INS-NIR-TEST",
    "1.2.250.1.213.1.4.11": "ASIP-SANTE-INS-NIR-DEMO",
}
RPPS_AUTHORITY = "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO"

# A seed message: python-hl7 reads its separators from MSH-1/MSH-2.
_SEED = hl7.parse("MSH|^~\\&|")
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")


def escape(text: str | None) -> str:
    """A field value: separators and the escape character escaped by python-hl7,
    line breaks as ``\\.br\\``, characters outside ASCII kept (UTF-8)."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _ASCII_RUN.sub(lambda m: str(_SEED.escape(m.group(0), {"\n": ".br"})), text)


def hl7_ts(value: datetime | str) -> str:
    """DTM (HL7 v2.5 2.A.22), to the second, in UTC with its offset."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


@dataclass(frozen=True)
class Header:
    """Who sends, to whom, when and under which control id (MSH)."""

    control_id: str
    at: datetime
    sending_facility: str
    receiving_application: str
    receiving_facility: str


@dataclass(frozen=True)
class Order:
    """The exam as the hospital ordered it (ORC, OBR)."""

    accession_number: str
    placer_order_number: str | None
    study_instance_uid: str
    modality: str
    body_part: str
    requested_at: str
    establishment_code: str
    requester_name: str
    requester_rpps: str | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True)
class SignedReport:
    """A signed report as far as one version: the canonical content (docs/reports.md),
    its hash, the addenda up to this version and the signed PDF of this version."""

    content: dict[str, Any]
    sha256: str
    addenda: Sequence[dict[str, Any]] = field(default_factory=tuple)
    pdf: bytes = b""
    # The exam's record (PDF/A) to carry beside the report, or empty.
    record_pdf: bytes = b""

    @property
    def version(self) -> int:
        return len(self.addenda)

    @property
    def signed_at(self) -> str:
        if self.addenda:
            return str(self.addenda[-1]["content"]["signed_at"])
        return str(self.content["signed_at"])

    @property
    def signer(self) -> dict[str, Any]:
        if self.addenda:
            return dict(self.addenda[-1]["content"]["signer"])
        return dict(self.content["signer"])


def _join(*fields: str) -> str:
    return "|".join(fields).rstrip("|")


def _xcn(person: dict[str, Any] | None) -> str:
    """A physician (XCN, or NDL's first component) identified by RPPS when known."""
    if not person:
        return ""
    name = escape(person.get("name"))
    rpps = person.get("rpps")
    if rpps:
        return f"{escape(rpps)}^{name}^^^^^^^{RPPS_AUTHORITY}^L^^^RPPS"
    return f"^{name}"


def msh(header: Header, message_type: str) -> str:
    return _join(
        "MSH",
        "^~\\&",
        SENDING_APPLICATION,
        escape(header.sending_facility),
        escape(header.receiving_application),
        escape(header.receiving_facility),
        hl7_ts(header.at),
        "",
        message_type,
        escape(header.control_id),
        "P",
        VERSION,
        "",
        "",
        "AL",  # MSH-15: accept acknowledgement always (original mode answers on the link)
        "NE",
        "FRA",
        CHARSET,
        "FR",
    )


def pid(patient: DocumentPatient, establishment_code: str) -> str:
    """PID with the IPP, and the INS only for a qualified identity (its OID as the
    assigning authority); the birth name (L) and the used name (D) when different."""
    ids = [f"{escape(patient.ipp)}^^^{escape(establishment_code)}^PI"]
    ins = patient.qualified_ins
    if ins is not None:
        matricule, oid = ins
        authority = INS_AUTHORITIES.get(oid, "INS")
        ids.append(f"{escape(matricule)}^^^{authority}&{oid}&ISO^INS")
    names = [f"{escape(patient.birth_name)}^{escape(patient.first_name)}^^^^^L"]
    if patient.used_name and patient.used_name != patient.birth_name:
        first = patient.used_first_name or patient.first_name
        names.append(f"{escape(patient.used_name)}^{escape(first)}^^^^^D")
    return _join(
        "PID",
        "1",
        "",
        "~".join(ids),
        "",
        "~".join(names),
        "",
        patient.birth_date.strftime("%Y%m%d"),
        patient.sex,
    )


def _orc_obr(order: Order, control: str, status: str, when: str, report_status: str) -> list[str]:
    placer = escape(order.placer_order_number or "")
    filler = f"{escape(order.accession_number)}^{SENDING_APPLICATION}"
    modality, part = escape(order.modality), escape(order.body_part)
    service = f"{modality}-{part}^{modality} {part}^L"
    requester = f"{escape(order.requester_rpps or '')}^{escape(order.requester_name)}"
    orc = _join("ORC", control, placer, filler, "", status)
    obr = [""] * 33
    obr[0] = "OBR"
    obr[1] = "1"
    obr[2] = placer
    obr[3] = filler
    obr[4] = service
    obr[7] = hl7_ts(order.requested_at)
    obr[16] = requester
    obr[22] = when
    obr[24] = "RAD"  # OBR-24 diagnostic service section (HL7 table 0074)
    obr[25] = report_status
    return [orc, _join(*obr)]


def oru_r01(
    header: Header,
    patient: DocumentPatient,
    order: Order,
    report: SignedReport | None,
) -> hl7.Message:
    """ORU^R01 (HL7 v2.5 7.3.1). A report gives OBR-25 ``F`` with its sections and the
    signed PDF as an ED observation; a version with addenda gives ``C`` (corrected),
    the whole report again with each addendum; ``report`` None is the exam's
    cancellation (``X``, ORC-1 ``CA``)."""
    segments = [msh(header, "ORU^R01^ORU_R01"), pid(patient, order.establishment_code), "PV1|1|E"]
    if report is None:
        when = hl7_ts(header.at)
        segments += _orc_obr(order, "CA", "CA", when, "X")
        if order.cancel_reason:
            segments.append(_join("NTE", "1", "L", escape(order.cancel_reason)))
        return hl7.parse("\r".join(segments))
    status = "C" if report.version else "F"
    when = hl7_ts(report.signed_at)
    segments += _orc_obr(order, "RE", "CM", when, status)
    # OBR-32, the principal result interpreter: the signer of the report.
    obr = segments[-1].split("|")
    obr += [""] * (33 - len(obr))
    signer = report.content["signer"]
    obr[32] = f"{escape(signer.get('rpps') or '')}&{escape(signer['name'])}"
    segments[-1] = _join(*obr)
    observations: list[tuple[str, str, str]] = []
    fields = report.content["report"]
    for name, code, label in SECTIONS:
        if fields.get(name):
            observations.append(("TX", f"{code}^{escape(label)}^{LOINC}", escape(fields[name])))
    for add in report.addenda:
        text = f"Addendum n° {add['content']['number']} : {add['content']['text']}"
        observations.append(("TX", f"{ADDENDUM[0]}^{ADDENDUM[1]}^{LOINC}", escape(text)))
    pdf = base64.b64encode(report.pdf).decode()
    observations.append(
        ("ED", f"{DOCUMENT[0]}^{escape(DOCUMENT[1])}^{LOINC}", f"^AP^PDF^Base64^{pdf}")
    )
    if report.record_pdf:
        data = base64.b64encode(report.record_pdf).decode()
        code = f"{RECORD[0]}^{escape(RECORD[1])}^{RECORD[2]}"
        observations.append(("ED", code, f"^AP^PDF^Base64^{data}"))
    for number, (kind, code, value) in enumerate(observations, 1):
        segments.append(
            _join(
                "OBX", str(number), kind, code, "", value, "", "", "", "", "", status, "", "", when
            )
        )
    return hl7.parse("\r".join(segments))


@dataclass(frozen=True)
class Document:
    """A CDA document to carry in MDM: its id, its version's parent, its bytes."""

    document_id: str
    parent_id: str | None
    cda: bytes
    signed_at: str
    signer: dict[str, Any]


def mdm(header: Header, patient: DocumentPatient, order: Order, document: Document) -> hl7.Message:
    """MDM^T02 (original document with content, HL7 v2.5 9.6.2), or MDM^T10 (a new
    version replacing the parent, TXA-13, 9.6.10); OBX-5 the CDA, base64 (ED)."""
    event = "T10" if document.parent_id else "T02"
    when = hl7_ts(document.signed_at)
    txa = [""] * 20
    txa[0] = "TXA"
    txa[1] = "1"
    txa[2] = "CR^Compte rendu"
    txa[3] = "AP"
    txa[4] = when
    txa[5] = _xcn(document.signer)
    txa[6] = when
    txa[12] = f"{document.document_id}^^{document.document_id}^ISO"
    txa[13] = f"{document.parent_id}^^{document.parent_id}^ISO" if document.parent_id else ""
    txa[14] = escape(order.placer_order_number or "")
    txa[15] = f"{escape(order.accession_number)}^{SENDING_APPLICATION}"
    txa[17] = "LA"  # TXA-17: legally authenticated (signed)
    txa[19] = "AV"  # TXA-19: available for patient care
    cda = base64.b64encode(document.cda).decode()
    segments = [
        msh(header, f"MDM^{event}^MDM_T02"),
        _join("EVN", event, hl7_ts(header.at)),
        pid(patient, order.establishment_code),
        "PV1|1|E",
        _join(*txa),
        _join(
            "OBX",
            "1",
            "ED",
            f"{DOCUMENT[0]}^{escape(DOCUMENT[1])}^{LOINC}",
            "",
            f"^TEXT^XML^Base64^{cda}",
            "",
            "",
            "",
            "",
            "",
            "F",
        ),
    ]
    return hl7.parse("\r".join(segments))


def acknowledgement(message: hl7.Message) -> tuple[str, str, str]:
    """(MSA-1 code, MSA-2 control id, the error text of MSA-3 or ERR-8) of an ACK."""
    msa = message.segment("MSA")
    code = str(msa(1))
    acked = str(msa(2))
    text = str(msa(3)) if len(msa) > 3 else ""
    try:
        err = message.segment("ERR")
        if len(err) > 8 and str(err(8)):
            text = str(err(8))
    except KeyError:
        pass
    return code, acked, text
