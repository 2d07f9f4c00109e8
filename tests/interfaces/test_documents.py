"""The ORU and the CDA as values: the same report gives the same bytes, the national
header's elements are there, the INS only for a qualified identity."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Any

import hl7
from lxml import etree

from server.interfaces import cda, hl7_out
from server.interfaces.identity import INS_NIR_OID, DocumentPatient

NS = {"c": "urn:hl7-org:v3"}
STUDY = "1.2.826.0.1.3680043.8.498.1"
CONTENT: dict[str, Any] = {
    "version": 1,
    "exam": {
        "id": "e1",
        "accession_number": "A26000001",
        "study_instance_uid": STUDY,
        "modality": "CT",
        "body_part": "HEAD",
        "urgency": "emergency",
        "requested_at": "2026-12-06T08:00:00Z",
        "clinical_question": "AVC ?",
        "establishment": {"code": "HOPA", "name": "Hôpital A"},
        "requester": {"id": 1, "name": "Dr Urg", "rpps": None},
    },
    "patient": {"id": "IPP-1", "name": "DUPONT^Jeanne", "birth_date": "1948-03-02", "sex": "F"},
    "report": {
        "indication": "AVC ?",
        "technique": "Scanner | sans injection",
        "findings": "Ligne 1\nLigne 2 ^ & ~ \\ é",
        "conclusion": "Pas d'hémorragie.",
        "dose": "PDL 850 mGy.cm",
        "critical": False,
    },
    "signer": {"id": 2, "name": "Dr Rad", "rpps": "10001234567"},
    "signed_at": "2026-12-06T09:00:00Z",
}
ADDENDUM = {
    "content": {
        "number": 1,
        "text": "Pas de thrombus.",
        "signer": {"id": 2, "name": "Dr Rad", "rpps": "10001234567"},
        "signed_at": "2026-12-06T09:30:00Z",
    },
    "sha256": "b" * 64,
}
PDF = b"%PDF-1.4 fake"


def patient(status: str = "provisional") -> DocumentPatient:
    return DocumentPatient(
        establishment_id=1,
        ipp="IPP-1",
        birth_name="DUPONT",
        first_names="Jeanne Marie",
        sex="F",
        birth_date=date(1948, 3, 2),
        identity_status=status,
        ins="248039912345678",
        ins_oid=INS_NIR_OID,
        used_name="MARTIN",
    )


def build(addenda: list[dict[str, Any]], who: DocumentPatient) -> bytes:
    return cda.build(
        content=CONTENT,
        sha256="a" * 64,
        addenda=addenda,
        pdf=PDF,
        patient=who,
        establishment=cda.Establishment("HOPA", "Hôpital A", "750000001"),
        ccam=("ACQK001", "Scanographie du crâne"),
    )


def test_cda_header_and_body() -> None:
    doc = etree.fromstring(build([], patient("qualified")))
    x = lambda path: doc.xpath(path, namespaces=NS)  # noqa: E731
    assert x("/c:ClinicalDocument/c:typeId/@extension") == ["POCD_HD000040"]
    assert x("/c:ClinicalDocument/c:code/@code") == ["18748-4"]
    assert x("/c:ClinicalDocument/c:versionNumber/@value") == ["1"]
    ids = x("//c:recordTarget/c:patientRole/c:id")
    assert [(i.get("root"), i.get("extension")) for i in ids][0] == (
        INS_NIR_OID,
        "248039912345678",
    )
    assert x("//c:patient/c:name/c:family[@qualifier='BR']/text()") == ["DUPONT"]
    assert x("//c:patient/c:name/c:given/text()") == ["Jeanne", "Marie"]
    assert x("//c:author/c:assignedAuthor/c:id/@extension") == ["810001234567"]
    assert x("//c:author/c:assignedAuthor/c:id/@root") == [cda.PS_NATIONAL_ID_OID]
    assert x("//c:legalAuthenticator/c:signatureCode/@code") == ["S"]
    assert x("//c:custodian//c:id/@extension") == ["1750000001"]
    assert x("//c:documentationOf/c:serviceEvent/c:id/@root") == [STUDY]
    assert x("//c:serviceEvent/c:code/@code") == ["ACQK001"]
    assert x("//c:serviceEvent/c:code/@codeSystem") == [cda.CCAM_OID]
    assert x("//c:inFulfillmentOf/c:order/c:id/@extension") == ["A26000001"]
    assert x("//c:relatedDocument") == []
    (text,) = x("//c:component/c:nonXMLBody/c:text")
    assert text.get("mediaType") == "application/pdf" and text.get("representation") == "B64"
    assert base64.b64decode(text.text) == PDF


def test_ins_only_for_a_qualified_identity() -> None:
    for status in ("provisional", "recovered", "validated"):
        doc = etree.fromstring(build([], patient(status)))
        roots = doc.xpath("//c:patientRole/c:id/@root", namespaces=NS)
        assert INS_NIR_OID not in roots, status


def test_same_report_same_document_and_addendum_replaces_it() -> None:
    first, again = build([], patient()), build([], patient())
    assert first == again
    second = etree.fromstring(build([ADDENDUM], patient()))
    one = etree.fromstring(first)
    get = lambda doc, path: doc.xpath(path, namespaces=NS)  # noqa: E731
    assert get(second, "/c:ClinicalDocument/c:setId/@root") == get(
        one, "/c:ClinicalDocument/c:setId/@root"
    )
    assert get(second, "/c:ClinicalDocument/c:id/@root") != get(
        one, "/c:ClinicalDocument/c:id/@root"
    )
    assert get(second, "//c:relatedDocument/@typeCode") == ["RPLC"]
    assert get(second, "//c:relatedDocument/c:parentDocument/c:id/@root") == get(
        one, "/c:ClinicalDocument/c:id/@root"
    )
    assert get(second, "/c:ClinicalDocument/c:versionNumber/@value") == ["2"]


def header(control: str = "TI1") -> hl7_out.Header:
    return hl7_out.Header(control, datetime(2026, 12, 6, 9, 0, 1, tzinfo=UTC), "TI", "DPI", "HOPA")


def order() -> hl7_out.Order:
    return hl7_out.Order(
        accession_number="A26000001",
        placer_order_number="P-77",
        study_instance_uid=STUDY,
        modality="CT",
        body_part="HEAD",
        requested_at="2026-12-06T08:00:00Z",
        establishment_code="HOPA",
        requester_name="Dr Urg",
    )


def test_oru_sections_escaped_and_pdf_encapsulated() -> None:
    report = hl7_out.SignedReport(CONTENT, "a" * 64, (), PDF)
    text = str(hl7_out.oru_r01(header(), patient("qualified"), order(), report))
    message = hl7.parse(text)
    assert str(message.segment("MSH")(9)) == "ORU^R01^ORU_R01"
    assert str(message.segment("MSH")(18)) == "UNICODE UTF-8"
    assert str(message.segment("OBR")(25)) == "F"
    assert str(message.segment("OBR")(2)) == "P-77"
    obx = message.segments("OBX")
    codes = [str(o(3)(1)(1)) for o in obx]
    assert codes == ["18785-6", "55111-9", "18782-3", "19005-8", "73569-6", "18748-4"]
    findings = obx[2]
    assert message.unescape(str(findings(5))) == "Ligne 1\rLigne 2 ^ & ~ \\ é"
    assert message.unescape(str(obx[1](5))) == "Scanner | sans injection"
    ed = obx[-1]
    assert str(ed(2)) == "ED" and base64.b64decode(str(ed(5)(1)(5))) == PDF
    pid = message.segment("PID")
    assert str(pid(3)(2)(1)) == "248039912345678"
    assert "1.2.250.1.213.1.4.8" in str(pid(3)(2)(4))


def test_oru_same_inputs_same_text_and_corrected_version() -> None:
    report = hl7_out.SignedReport(CONTENT, "a" * 64, (), PDF)
    one = str(hl7_out.oru_r01(header(), patient(), order(), report))
    assert one == str(hl7_out.oru_r01(header(), patient(), order(), report))
    corrected = hl7_out.SignedReport(CONTENT, "a" * 64, (ADDENDUM,), PDF)
    message = hl7.parse(str(hl7_out.oru_r01(header("TI2"), patient(), order(), corrected)))
    assert str(message.segment("OBR")(25)) == "C"
    assert {str(o(11)) for o in message.segments("OBX")} == {"C"}
    assert "55107-7" in [str(o(3)(1)(1)) for o in message.segments("OBX")]
    # Not qualified: no INS in PID-3.
    assert "INS" not in str(message.segment("PID")(3))
