"""The identity feed over real MLLP (docs/hl7.md "Inbound"): creation, update,
character sets, acknowledgements, refusals and duplicates, with the database
checked exactly after each."""

from __future__ import annotations

import asyncio
from datetime import date

from hl7.mllp import open_hl7_connection
from sqlalchemy import select

from server.core.audit import AuditEntry
from server.core.models import PatientIdentity
from server.interfaces.senders import Hl7Message
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code, err


async def identity(listener: Hl7Listener, ipp: str) -> PatientIdentity | None:
    async with listener.app.read() as db:
        return await db.scalar(select(PatientIdentity).where(PatientIdentity.ipp == ipp))


async def test_a28_creates_a_qualified_identity(hl7_listener: Hl7Listener) -> None:
    control = m.control_id()
    [ack] = await hl7_listener.send(m.adt("A28", control, m.pid("IPP100")))
    assert ack_code(ack) == "AA"
    assert str(ack.segment("MSA")(2)) == control
    assert str(ack.segment("MSH")(9)) == "ACK^A28^ACK"
    row = await identity(hl7_listener, "IPP100")
    assert row is not None
    assert (row.birth_name, row.first_names, row.sex, row.birth_date) == (
        "DUPONT",
        "Hélène Marie",
        "F",
        date(1969, 3, 15),
    )
    assert (row.ins, row.ins_oid, row.identity_status) == (m.INS_HELENE, m.INS_OID, "qualified")
    assert (row.used_name, row.used_first_name, row.birthplace_code) == (
        "MARTIN",
        "Hélène",
        "75056",
    )
    assert row.merged_into_id is None
    async with hl7_listener.app.read() as db:
        actions = list(await db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["patient.created", "hl7.message"]


async def test_a31_updates_the_same_identity(hl7_listener: Hl7Listener) -> None:
    await hl7_listener.send(m.adt("A28", m.control_id(), m.pid("IPP101", status="PROV", ins=None)))
    [ack] = await hl7_listener.send(
        m.adt("A31", m.control_id(), m.pid("IPP101", birth_name="DURAND", status="VALI", ins=None))
    )
    assert ack_code(ack) == "AA"
    assert await hl7_listener.count(PatientIdentity) == 1
    row = await identity(hl7_listener, "IPP101")
    assert row is not None
    assert (row.birth_name, row.identity_status, row.ins) == ("DURAND", "validated", None)


async def test_latin1_message_is_decoded_by_msh18(hl7_listener: Hl7Listener) -> None:
    text = m.adt(
        "A28",
        m.control_id(),
        m.pid(
            "IPP102",
            birth_name="Noël",
            first="Hélène",
            all_first="Hélène Noëlle",
            ins=None,
            status="PROV",
            used=None,
        ),
        charset="8859/1",
    )
    data = text.encode("latin-1")
    assert "é".encode("latin-1") in data and "é".encode() not in data
    [ack] = await hl7_listener.send(data)
    assert ack_code(ack) == "AA"
    row = await identity(hl7_listener, "IPP102")
    assert row is not None
    assert (row.birth_name, row.first_names) == ("NOËL", "Hélène Noëlle")


async def test_utf8_message_is_decoded(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.adt("A28", m.control_id(), m.pid("IPP103", birth_name="Noël", ins=None, status="PROV"))
    )
    assert ack_code(ack) == "AA"
    row = await identity(hl7_listener, "IPP103")
    assert row is not None and row.birth_name == "NOËL"


async def test_unknown_sender_is_rejected_and_audited(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.adt("A28", m.control_id(), m.pid("IPP104"), application="OTHER", facility="ELSEWHERE")
    )
    assert ack_code(ack) == "AR"
    assert err(ack) == ("MSH^1^4", "204")
    assert await hl7_listener.count(PatientIdentity) == 0
    assert await hl7_listener.count(Hl7Message) == 0
    async with hl7_listener.app.read() as db:
        row = await db.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()))
    assert row is not None and (row.action, row.outcome) == ("hl7.message", "denied")
    assert row.detail["application"] == "OTHER"


async def test_wrong_facility_is_rejected(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(m.adt("A28", m.control_id(), m.pid("IPP105"), facility="CHU_Z"))
    assert ack_code(ack) == "AR"
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_a_repeated_control_id_gets_the_same_ack_and_changes_nothing(
    hl7_listener: Hl7Listener,
) -> None:
    control = m.control_id()
    [first] = await hl7_listener.send(m.adt("A28", control, m.pid("IPP106")))
    # Sent again with other content: it is the same message for the sender.
    [again] = await hl7_listener.send(m.adt("A28", control, m.pid("IPP106", birth_name="AUTRE")))
    assert str(again) == str(first)
    row = await identity(hl7_listener, "IPP106")
    assert row is not None and row.birth_name == "DUPONT"
    assert await hl7_listener.count(Hl7Message) == 1


async def test_the_same_message_on_two_connections_at_once(hl7_listener: Hl7Listener) -> None:
    text = m.adt("A28", m.control_id(), m.pid("IPP107"))
    [a], [b] = await asyncio.gather(hl7_listener.send(text), hl7_listener.send(text))
    assert str(a) == str(b)
    assert await hl7_listener.count(PatientIdentity) == 1
    assert await hl7_listener.count(Hl7Message) == 1


async def test_missing_field_gets_ae_naming_it_and_nothing_is_stored(
    hl7_listener: Hl7Listener,
) -> None:
    [ack] = await hl7_listener.send(m.adt("A28", m.control_id(), m.pid("IPP108", birth="")))
    assert ack_code(ack) == "AE"
    assert err(ack) == ("PID^1^7", "101")
    assert str(ack.segment("ERR")(4)) == "E"
    assert await hl7_listener.count(PatientIdentity) == 0
    assert await hl7_listener.count(Hl7Message, Hl7Message.ack_code == "AE") == 1


async def test_bad_ins_key_is_refused(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        m.adt("A28", m.control_id(), m.pid("IPP109", ins="269037505612315"))
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("PID^1^3", "102")
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_missing_msh_is_rejected(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send("PID|1||IPP110^^^CHU_A^PI||X^Y||19800101|M\r")
    assert ack_code(ack) == "AR"
    assert str(ack.segment("MSA")(2)) == ""
    assert err(ack)[1] == "100"
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_bad_segment_is_rejected(hl7_listener: Hl7Listener) -> None:
    text = m.adt("A28", m.control_id(), "P!D|oops", m.pid("IPP111"))
    [ack] = await hl7_listener.send(text)
    assert ack_code(ack) == "AR"
    assert err(ack) == ("P!D^3", "100")
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_unsupported_message_type_is_rejected(hl7_listener: Hl7Listener) -> None:
    text = m.adt("A28", m.control_id(), m.pid("IPP112")).replace("ADT^A28^ADT_A05", "ORU^R01")
    [ack] = await hl7_listener.send(text)
    assert ack_code(ack) == "AR"
    assert err(ack) == ("MSH^1^9", "200")
    assert await hl7_listener.count(PatientIdentity) == 0


async def test_truncated_frame_is_dropped_and_the_next_one_applied(
    hl7_listener: Hl7Listener,
) -> None:
    cut = m.adt("A28", m.control_id(), m.pid("IPP113")).encode()[:60]
    whole = m.adt("A28", m.control_id(), m.pid("IPP114")).encode()
    reader, writer = await open_hl7_connection("127.0.0.1", hl7_listener.port)
    writer.write(b"\x0b" + cut)  # the start of a block, never ended
    writer.writeblock(whole)
    await writer.drain()
    ack = await reader.readmessage()
    writer.close()
    await writer.wait_closed()
    assert ack_code(ack) == "AA"
    assert await identity(hl7_listener, "IPP113") is None
    assert await identity(hl7_listener, "IPP114") is not None
    assert await hl7_listener.count(AuditEntry, AuditEntry.action == "hl7.frame") == 1


async def test_connection_closed_inside_a_block_applies_nothing(
    hl7_listener: Hl7Listener,
) -> None:
    data = m.adt("A28", m.control_id(), m.pid("IPP115")).encode()
    reader, writer = await open_hl7_connection("127.0.0.1", hl7_listener.port)
    writer.write(b"\x0b" + data)  # no end block
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(200):  # the listener audits the dropped frame once it sees the close
        if await hl7_listener.count(AuditEntry, AuditEntry.action == "hl7.frame"):
            break
        await asyncio.sleep(0.01)
    assert await hl7_listener.count(AuditEntry, AuditEntry.action == "hl7.frame") == 1
    assert await identity(hl7_listener, "IPP115") is None


async def test_short_msh_is_answered(hl7_listener: Hl7Listener) -> None:
    [no_trigger, no_control] = await hl7_listener.send(
        "MSH|^~\\&|DPI^1.2.250.1.999^ISO|CHU_A|||2026||ADT|C1|P|2.5\rPID|1\r",
        "MSH|^~\\&|DPI|CHU_A\r",
    )
    assert ack_code(no_trigger) == "AR"
    assert str(no_trigger.segment("MSH")(5)) == "DPI^1.2.250.1.999^ISO"
    assert str(no_trigger.segment("MSA")(2)) == "C1"
    assert ack_code(no_control) == "AR"
    assert err(no_control) == ("MSH^1^10", "101")
    assert await hl7_listener.count(PatientIdentity) == 0
