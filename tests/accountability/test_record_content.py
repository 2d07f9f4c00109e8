"""The record's content and pages from values (no server): the sections an exam
driven through the API does not reach in the other tests (calls, escalations,
addenda), and an exam with nothing yet."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import pypdf

from server.accountability import record
from server.core.models import Establishment, Exam, ExamEvent, User

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def _exam() -> Exam:
    est = Establishment(id=1, code="HOPA", name="Hôpital A")
    urg = User(id=1, username="urg", display_name="Dr Urg", role="urgentist")
    return Exam(
        id="e1",
        establishment=est,
        requester=urg,
        assigned_radiologist=None,
        status="acquiring",
        accession_number="A0001",
        study_instance_uid="2.25.1",
        patient_id="IPP1",
        patient_name="DUPONT^Jeanne",
        patient_birth_date=date(1948, 3, 2),
        patient_sex="F",
        modality="CT",
        body_part="HEAD",
        clinical_question="AVC ?",
        urgency="emergency",
        contraindications=None,
        consent=False,
        protocol_text="TDM sans injection",
    )


def _event(seq: int, kind: str, body: dict, minutes: int, author: User | None = None):  # type: ignore[no-untyped-def]
    return (
        ExamEvent(seq=seq, kind=kind, body=body, at=T0 + timedelta(minutes=minutes)),
        author,
    )


def test_calls_escalations_and_an_unsigned_exam() -> None:
    exam = _exam()
    rad = User(id=2, username="rad", display_name="Dr Rad", role="radiologist")
    events = [
        _event(
            1,
            "exam.requested",
            {"modality": "CT", "body_part": "HEAD", "urgency": "emergency"},
            0,
            exam.requester,
        ),
        _event(
            2,
            "escalation.raised",
            {"level": 1, "reason": "not_accepted", "notified": ["backup"]},
            5,
        ),
        _event(3, "exam.accepted", {}, 7, rad),
        _event(4, "call.started", {"recording": True}, 9, rad),
        _event(5, "call.ended", {"duration_s": 95, "participants": ["rad", "urg"]}, 11),
    ]
    g = record.Gathered(exam, events, None, [], None)
    facts = record.content(g, T0 + timedelta(hours=1))
    assert [e["seq"] for e in facts["events"]] == [1, 2, 3, 4, 5]
    assert [e["at"] for e in facts["events"]] == [
        (T0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (0, 5, 7, 9, 11)
    ]
    assert [e["kind"] for e in facts["calls"]] == ["call.started", "call.ended"]
    assert facts["escalations"][0]["body"]["reason"] == "not_accepted"
    pdf = record.render(facts)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(p.extract_text() for p in reader.pages).replace("\n", " ")
    assert "enregistré" in text and "durée 95 s" in text
    assert "niveau 1 : not_accepted" in text
    assert "Pas de compte rendu signé." in text and "Aucune image reçue." in text
    assert "Consentement du patient : non recueilli" in text
    assert json.loads(reader.attachments["record.json"][0]) == json.loads(
        json.dumps(facts, ensure_ascii=False)
    )
    # Paris time on the pages: 03:00 UTC in December is 04:00 in Paris.
    assert "#1  06/12/2026 04:00:00" in text


def test_drafts_are_not_in_the_hospital_s_record() -> None:
    # gather() keeps what an urgentist may see; content() takes what it is given.
    from rooms.permissions import visible
    from rooms.types import EventKind, Role

    assert not visible(EventKind.REPORT_DRAFT, Role.URGENTIST)
    assert visible(EventKind.CALL_STARTED, Role.URGENTIST)
