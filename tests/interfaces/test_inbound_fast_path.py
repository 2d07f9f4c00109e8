"""What the inbound path's shortcuts must still give (docs/hl7.md "Inbound",
docs/benchmarks.md "HL7 inbound"): a new order's escalation timers planned from the
exam in hand are those a re-plan from SQL gives, and an order whose exam is loaded
inside its transaction still chains its audit rows and answers a repeat with the
stored ACK."""

from __future__ import annotations

from sqlalchemy import select

from server.core import audit
from server.core.audit import AuditEntry
from server.core.models import Exam
from server.exams.escalation import sync_timers
from server.interfaces.senders import Hl7Message
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code


async def test_new_order_timers_are_those_planned_from_sql(hl7_listener: Hl7Listener) -> None:
    app = hl7_listener.app
    assert await app.bus.timer_count() == 0
    # The second message's ACK leaves after the first one's events are published
    # (a connection's messages are published in order, before the next is read).
    acks = await hl7_listener.send(
        m.order(m.control_id(), "CMD-T1", m.pid("IPP700")),
        m.adt("A28", m.control_id(), m.pid("IPP701", status="PROV", ins=None)),
    )
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    scheduled = await app.bus.timer_count()
    assert scheduled > 0
    async with app.read() as db:
        exam_id = await db.scalar(select(Exam.id))
    assert exam_id is not None
    await sync_timers(app, exam_id)  # the re-plan from SQL adds and cancels nothing
    assert await app.bus.timer_count() == scheduled


async def test_audit_rows_and_stored_acks_of_messages_chain_and_replay(
    hl7_listener: Hl7Listener,
) -> None:
    control = m.control_id()
    order = m.order(control, "CMD-T2", m.pid("IPP702"))
    first = await hl7_listener.send(
        m.adt("A28", m.control_id(), m.pid("IPP703", status="PROV", ins=None)), order
    )
    [again] = await hl7_listener.send(order)
    assert [ack_code(a) for a in first] == ["AA", "AA"]
    assert str(again) == str(first[1])  # the stored ACK, word for word
    assert await hl7_listener.count(Exam) == 1
    assert await hl7_listener.count(Hl7Message) == 2
    async with hl7_listener.app.read() as db:
        count, _head, broken = await audit.verify(db)
        actions = list(await db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert broken is None
    assert count == len(actions)
    assert actions.count("hl7.message") == 2
    assert {"patient.created", "exam.request"} <= set(actions)
