"""Orders, cancellations, drafts, merges and identifier changes over real MLLP
(docs/hl7.md "Orders", "Merges"): the exam is requested through the same service
as the form, and the database is what the acknowledgement says."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select

from dicomweb.samples import instance, multipart
from rooms.types import EventKind
from server.core.audit import AuditEntry
from server.core.channels import user_channel
from server.core.models import Exam, ExamEvent, PatientIdentity, User
from server.interfaces.drafts import OrderDraft
from tests.helpers import of_exam
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code, err

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]


async def exams(listener: Hl7Listener) -> list[Exam]:
    async with listener.app.read() as db:
        return list((await db.scalars(select(Exam).order_by(Exam.created_at))).unique())


async def kinds(listener: Hl7Listener, exam_id: str) -> list[str]:
    async with listener.app.read() as db:
        rows = await db.scalars(
            select(ExamEvent.kind).where(ExamEvent.exam_id == exam_id).order_by(ExamEvent.seq)
        )
        return list(rows)


async def test_new_order_requests_the_exam_as_the_form_does(
    hl7_listener: Hl7Listener, api_for: ApiFor
) -> None:
    control = m.control_id()
    [ack] = await hl7_listener.send(m.order(control, "CMD-1", m.pid("IPP200")))
    assert ack_code(ack) == "AA", str(ack)
    assert str(ack.segment("MSA")(2)) == control
    [exam] = await exams(hl7_listener)
    assert exam.status == "requested"
    assert exam.placer_order_number == "CMD-1"
    assert (exam.modality, exam.body_part, exam.urgency, exam.consent) == (
        "CT",
        "Scanner cérébral",
        "emergency",
        True,
    )
    assert exam.clinical_question == "Céphalée brutale, suspicion d'hémorragie méningée"
    assert (exam.patient_id, exam.patient_name, exam.patient_sex) == (
        "IPP200",
        "DUPONT^Hélène Marie",
        "F",
    )
    assert exam.patient_identity is not None and exam.patient_identity.ipp == "IPP200"
    assert exam.establishment.code == "HOPA"
    assert exam.requester.active is False  # the sender's interface account
    assert await kinds(hl7_listener, exam.id) == [EventKind.EXAM_REQUESTED]
    # The radiologists' worklist lists it, with the qualified identity.
    rad = await api_for("rad")
    listed = (await rad.get("/api/exams", params={"status": "requested"})).json()["exams"]
    [shown] = [e for e in listed if e["id"] == exam.id]
    assert shown["placer_order_number"] == "CMD-1"
    identity = shown["patient"]["identity"]
    assert (identity["status"], identity["ins"], identity["birth_name"]) == (
        "qualified",
        m.INS_HELENE,
        "DUPONT",
    )
    # Another establishment's staff do not see it.
    urg_b = await api_for("urg_b")
    assert (await urg_b.get(f"/api/exams/{exam.id}")).status_code == 404


async def test_ordering_provider_known_by_rpps_is_the_requester(
    hl7_listener: Hl7Listener,
) -> None:
    async with hl7_listener.app.db() as db:
        urg = await db.scalar(select(User).where(User.username == "urg_a"))
        assert urg is not None
        urg.professional_id = "10101010101"
        await db.commit()
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-2", m.pid("IPP201"), provider="10101010101^URG^A")
    )
    assert ack_code(ack) == "AA"
    [exam] = await exams(hl7_listener)
    assert exam.requester.username == "urg_a"


async def test_omi_o23_is_read_too(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-3", m.pid("IPP202"), kind="OMI^O23^OMI_O23", modality="MR")
    )
    assert ack_code(ack) == "AA"
    [exam] = await exams(hl7_listener)
    assert exam.modality == "MR"


async def test_order_without_consent_waits_as_a_draft_the_urgentist_completes(
    hl7_listener: Hl7Listener, api_for: ApiFor
) -> None:
    async with hl7_listener.app.read() as db:
        urg_a = await db.scalar(select(User.id).where(User.username == "urg_a"))
        urg_b = await db.scalar(select(User.id).where(User.username == "urg_b"))
    assert urg_a is not None and urg_b is not None
    heard: dict[int, list[dict[str, object]]] = {urg_a: [], urg_b: []}
    for user_id, inbox in heard.items():
        await hl7_listener.app.bus.subscribe(user_channel(user_id), inbox.append)
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-4", m.pid("IPP203"), consent=None, question=None)
    )
    assert ack_code(ack) == "AA"
    warnings = [(str(s(2)), str(s(4))) for s in ack.segments("ERR")]
    assert warnings == [("OBR^1^31", "W"), ("OBX^1^5", "W")]
    assert await exams(hl7_listener) == []
    urg = await api_for("urg_a")
    [draft] = (await urg.get("/api/exam-drafts")).json()["drafts"]
    assert draft["placer_order_number"] == "CMD-4"
    assert draft["missing"] == ["clinical_question", "consent"]
    assert draft["patient"]["ipp"] == "IPP203"
    # Its establishment's urgentists were told (just after the ACK), nobody else.
    for _ in range(500):
        if heard[urg_a]:
            break
        await asyncio.sleep(0.01)
    assert [(n["kind"], n["body"]["draft"]) for n in heard[urg_a]] == [("order.draft", draft["id"])]
    assert heard[urg_b] == []
    # Not another establishment's.
    assert (await (await api_for("urg_b")).get("/api/exam-drafts")).json()["drafts"] == []
    body = {
        "patient": {"id": "typed", "name": "TYPED^Name", "birth_date": "2000-01-01", "sex": "M"},
        "modality": "CT",
        "body_part": "Scanner cérébral",
        "clinical_question": "Traumatisme crânien",
        "urgency": "urgent",
        "consent": True,
    }
    resp = await urg.post(f"/api/exam-drafts/{draft['id']}", json=body)
    assert resp.status_code == 201, resp.text
    exam = resp.json()
    assert exam["placer_order_number"] == "CMD-4"
    # The identity is the order's, whatever was typed.
    assert (exam["patient"]["id"], exam["patient"]["name"]) == ("IPP203", "DUPONT^Hélène Marie")
    assert exam["requester"]["display_name"] == "URG_A"
    again = await urg.post(f"/api/exam-drafts/{draft['id']}", json=body)
    assert again.status_code == 409
    assert (await urg.get("/api/exam-drafts")).json()["drafts"] == []


async def test_cancellation_cancels_the_exam(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(m.order(m.control_id(), "CMD-5", m.pid("IPP204")))
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-5", m.pid("IPP204"), order_control="CA")
    )
    assert ack_code(ack) == "AA"
    [exam] = await exams(hl7_listener)
    assert exam.status == "cancelled"
    assert exam.cancel_reason is not None and "ORC-1 CA" in exam.cancel_reason
    assert await kinds(hl7_listener, exam.id) == [
        EventKind.EXAM_REQUESTED,
        EventKind.EXAM_CANCELLED,
    ]


async def test_cancellation_of_a_draft(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(m.order(m.control_id(), "CMD-6", m.pid("IPP205"), consent=None))
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-6", m.pid("IPP205"), order_control="CA")
    )
    assert ack_code(ack) == "AA"
    async with hl7_listener.app.read() as db:
        draft = await db.scalar(select(OrderDraft))
    assert draft is not None and draft.status == "cancelled"


async def test_cancellation_of_an_unknown_order(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-404", m.pid("IPP206"), order_control="CA")
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("ORC^1^2", "204")
    # Nothing half-applied: not even the identity the message carried.
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_same_placer_number_twice_is_refused(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(m.order(m.control_id(), "CMD-7", m.pid("IPP207")))
    [ack] = await hl7_listener.send(m.order(m.control_id(), "CMD-7", m.pid("IPP207")))
    assert ack_code(ack) == "AE"
    assert err(ack) == ("ORC^1^2", "205")
    assert len(await exams(hl7_listener)) == 1


async def test_a_repeated_order_creates_one_exam(hl7_listener: Hl7Listener) -> None:
    text = m.order(m.control_id(), "CMD-8", m.pid("IPP208"))
    [first, again] = await hl7_listener.send(text, text)
    assert str(first) == str(again)
    assert len(await exams(hl7_listener)) == 1


async def test_unknown_modality_names_obr24(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-9", m.pid("IPP209"), modality="US")
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("OBR^1^24", "103")
    assert await exams(hl7_listener) == []


async def test_merge_moves_the_exams_to_the_survivor(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(
        m.order(
            m.control_id(), "CMD-10", m.pid("IPP-OLD", birth_name="DUPOND", ins=None, status="PROV")
        )
    )
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    async with hl7_listener.app.read() as db:
        old = await db.scalar(select(PatientIdentity).where(PatientIdentity.ipp == "IPP-OLD"))
        new = await db.scalar(select(PatientIdentity).where(PatientIdentity.ipp == "IPP-NEW"))
    assert old is not None and new is not None
    assert old.merged_into_id == new.id and new.merged_into_id is None
    [exam] = await exams(hl7_listener)
    assert exam.patient_identity_id == new.id
    assert (exam.patient_id, exam.patient_name) == ("IPP-NEW", "DUPONT^Hélène Marie")
    assert await kinds(hl7_listener, exam.id) == [
        EventKind.EXAM_REQUESTED,
        EventKind.PATIENT_MERGED,
    ]
    async with hl7_listener.app.read() as db:
        audit = await db.scalar(select(AuditEntry).where(AuditEntry.action == "patient.merged"))
    assert audit is not None and audit.detail["exams"] == [exam.id]
    # The merged identifier is no longer offered; the survivor is.
    assert await hl7_listener.count(PatientIdentity, PatientIdentity.merged_into_id.is_(None)) == 1


async def test_merge_of_an_unknown_patient_changes_nothing(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW2"), m.mrg("IPP-NOBODY"))
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("MRG^1^1", "204")
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_a47_changes_the_identifier(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(m.order(m.control_id(), "CMD-11", m.pid("IPP-A")))
    [ack] = await hl7_listener.send(m.adt("A47", m.control_id(), m.pid("IPP-B"), m.mrg("IPP-A")))
    assert ack_code(ack) == "AA", str(ack)
    async with hl7_listener.app.read() as db:
        ipps = list(await db.scalars(select(PatientIdentity.ipp)))
    assert ipps == ["IPP-B"]
    [exam] = await exams(hl7_listener)
    assert exam.patient_id == "IPP-B"
    assert EventKind.PATIENT_UPDATED in await kinds(hl7_listener, exam.id)


async def test_identities_are_per_establishment(hl7_listener: Hl7Listener, api_for: ApiFor) -> None:
    await hl7_listener.send(m.adt("A28", m.control_id(), m.pid("IPP300")))
    await hl7_listener.send(
        m.adt("A28", m.control_id(), m.pid("IPP300", birth_name="MARTIN"), facility="CHU_B")
    )
    assert await hl7_listener.count(PatientIdentity) == 2
    urg_a, urg_b = await api_for("urg_a"), await api_for("urg_b")
    [a] = (await urg_a.get("/api/patients", params={"q": "IPP300"})).json()["patients"]
    [b] = (await urg_b.get("/api/patients", params={"q": "IPP300"})).json()["patients"]
    assert (a["birth_name"], b["birth_name"]) == ("DUPONT", "MARTIN")
    found = (await urg_a.get("/api/patients", params={"q": "dup"})).json()["patients"]
    assert [p["ipp"] for p in found] == ["IPP300"]
    by_ins = (await urg_a.get("/api/patients", params={"q": m.INS_HELENE})).json()["patients"]
    assert [p["ipp"] for p in by_ins] == ["IPP300"]
    by_birth = await urg_b.get("/api/patients", params={"birth_date": "1969-03-15"})
    assert [p["birth_name"] for p in by_birth.json()["patients"]] == ["MARTIN"]
    rad = await api_for("rad")
    assert (await rad.get("/api/patients", params={"q": "IPP300"})).status_code == 403


async def test_images_archived_before_a_merge_are_found_under_the_survivor(
    hl7_listener: Hl7Listener, client_for: ApiFor
) -> None:
    """Patient safety: after A40 the images already in the archive answer QIDO-RS
    under the surviving identity, and no longer under the merged one."""
    await hl7_listener.send(
        m.order(
            m.control_id(), "CMD-12", m.pid("IPP-OLD", birth_name="DUPOND", ins=None, status="PROV")
        )
    )
    [exam] = await exams(hl7_listener)
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    base = f"/api/exams/{exam.id}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    shown = (await urg.get(base)).json()
    body, ctype = multipart([instance(**of_exam(shown))])
    stored = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert stored.status_code == 200, stored.text

    async def studies(patient_id: str) -> list[dict[str, Any]]:
        resp = await rad.get("/dicomweb/studies", params={"PatientID": patient_id})
        assert resp.status_code in (200, 204), resp.text
        return list(resp.json()) if resp.status_code == 200 else []

    [before] = await studies("IPP-OLD")
    assert before["00100010"]["Value"][0]["Alphabetic"].startswith("DUPOND^")
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    assert await studies("IPP-OLD") == []
    [after] = await studies("IPP-NEW")
    assert after["0020000D"] == before["0020000D"]
    assert after["00100010"]["Value"][0]["Alphabetic"] == "DUPONT^Hélène Marie"
    assert after["00100030"]["Value"] == ["19690315"]
    # Matching on the survivor's name finds it too; on the merged name, nothing.
    by_name = await rad.get("/dicomweb/studies", params={"PatientName": "DUPONT*"})
    assert [s["0020000D"] for s in by_name.json()] == [before["0020000D"]]
    gone = await rad.get("/dicomweb/studies", params={"PatientName": "DUPOND*"})
    assert gone.status_code == 204 or gone.json() == []
