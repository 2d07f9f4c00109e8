"""The identity feed in groups (docs/hl7.md "Acknowledgements", server/interfaces/group.py):
the identities named by the ADT messages at the head of a group are read in one SELECT
and the new ones inserted in one statement. Whatever the group, the database and the
ACKs must be what the same messages give one by one: each scenario is sent as one
group for establishment HOPA (sender DPI/CHU_A) and over one connection, one message
at a time, for HOPB (DPI/CHU_B), then the two establishments are compared."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import hl7
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from server.core import audit
from server.core.audit import AuditEntry
from server.core.context import AppContext
from server.core.models import Establishment, Exam, ExamEvent, PatientIdentity, User
from server.exams.service import ExamRequest, create_exam
from server.interfaces.inbound import Peer
from tests.helpers import exam_payload
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code
from tests.interfaces.test_group import commits

PEER = Peer(addr="127.0.0.1")
FACILITY = {"HOPA": "CHU_A", "HOPB": "CHU_B"}


@contextmanager
def statements(app: AppContext) -> Iterator[list[str]]:
    """The SQL statements the database saw inside the block."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        seen.append(sql)

    event.listen(app.sql.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(app.sql.sync_engine, "before_cursor_execute", count)


def adt(trigger: str, est: str, ipp: str, *more: str, control: str = "", **traits: Any) -> str:
    traits.setdefault("status", "PROV")
    traits.setdefault("ins", None)
    pid = m.pid(ipp, **traits)
    return m.adt(trigger, control or m.control_id(), pid, *more, facility=FACILITY[est])


async def before(hl7_listener: Hl7Listener, est: str) -> None:
    """IPP-0 with an exam ordered for it, and an exam typed in the form (no identity):
    an update in the group must reach the first and never the second."""
    acks = await hl7_listener.send(
        adt("A28", est, "IPP-0"),
        m.order(
            m.control_id(),
            "CMD-0",
            m.pid("IPP-0", status="PROV", ins=None),
            facility=FACILITY[est],
        ),
    )
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    app = hl7_listener.app
    async with app.db() as db:
        urg = await db.scalar(select(User).where(User.username == f"urg_{est[-1].lower()}"))
        assert urg is not None
        req = ExamRequest.model_validate(exam_payload())
        await create_exam(db, app.settings, urg, req, datetime.now(UTC))
        await db.commit()


async def as_group(hl7_listener: Hl7Listener, texts: list[str]) -> list[hl7.Message]:
    """The messages handed to the listener at the same moment (one group), each
    published once acknowledged, as the listener does: their connections publish
    at the same moment too."""
    inbound = hl7_listener.listener.inbound
    replies = await asyncio.gather(*(inbound.handle(t.encode(), PEER) for t in texts))
    await asyncio.gather(*(inbound.publish(effects) for _reply, effects in replies))
    return [hl7.parse(reply.decode()) for reply, _effects in replies]


def answer(ack: hl7.Message) -> tuple[str, ...]:
    """An ACK without what differs by sender and time: MSA-1, MSA-3, the ERR segments."""
    msa = ack.segment("MSA")
    errs = tuple(str(seg) for seg in ack if str(seg[0]) == "ERR")
    return (ack_code(ack), str(msa[3]) if len(msa) > 3 else "", *errs)


async def state(app: AppContext, est: str) -> dict[str, Any]:
    """What the messages left for one establishment, in terms that do not depend on it."""
    async with app.read() as db:
        est_id = await db.scalar(select(Establishment.id).where(Establishment.code == est))
        rows = list(
            await db.scalars(
                select(PatientIdentity).where(PatientIdentity.establishment_id == est_id)
            )
        )
        by_id = {row.id: row.ipp for row in rows}
        exams = list(await db.scalars(select(Exam).where(Exam.establishment_id == est_id)))
        kinds = list(
            await db.scalars(
                select(ExamEvent.kind)
                .where(ExamEvent.exam_id.in_([e.id for e in exams]))
                .order_by(ExamEvent.exam_id, ExamEvent.seq)
            )
        )
        trail = list(
            await db.scalars(
                select(AuditEntry)
                .where(AuditEntry.username == f"hl7:DPI/{FACILITY[est]}")
                .order_by(AuditEntry.id)
            )
        )
    return {
        "identities": sorted(
            (
                row.ipp,
                row.ins,
                row.ins_oid,
                row.identity_status,
                row.birth_name,
                row.first_names,
                row.used_name,
                row.used_first_name,
                row.sex,
                row.birth_date,
                row.birthplace_code,
                by_id.get(row.merged_into_id) if row.merged_into_id else None,
            )
            for row in rows
        ),
        "exams": sorted(
            (
                e.patient_id,
                e.patient_name,
                e.patient_birth_date,
                e.patient_sex,
                by_id.get(e.patient_identity_id) if e.patient_identity_id else None,
            )
            for e in exams
        ),
        "events": sorted(kinds),
        "audit": [
            (
                row.action,
                row.outcome,
                row.detail.get("ipp"),
                row.detail.get("ack"),
                row.detail.get("merged_ipp"),
                len(row.detail.get("exams", [])),
            )
            for row in trail
        ],
    }


async def compare(hl7_listener: Hl7Listener, script: Any) -> tuple[list[Any], list[str]]:
    """``script(est)`` sent as one group for HOPA and one by one for HOPB; the answers
    (equal for both) and the statements of the group."""
    app = hl7_listener.app
    for est in FACILITY:
        await before(hl7_listener, est)
    with commits(app) as seen, statements(app) as sql:
        grouped = await as_group(hl7_listener, script("HOPA"))
    assert len(seen) == 1  # one transaction: the messages did form one group
    alone = await hl7_listener.send(*script("HOPB"))
    assert [answer(a) for a in grouped] == [answer(a) for a in alone]
    assert await state(app, "HOPA") == await state(app, "HOPB")
    async with app.read() as db:
        _count, _head, broken = await audit.verify(db)
    assert broken is None
    return [answer(a) for a in grouped], sql


def accepted(est: str) -> list[str]:
    return [
        adt("A28", est, "IPP-1"),
        adt("A28", est, "IPP-2", birth_name="BERNARD", first="Noël", all_first="Noël"),
        # The same patient again in the group: created above, updated here.
        adt("A31", est, "IPP-1", birth_name="DURAND"),
        # A patient from before the group, shown by an exam: the exam follows.
        adt("A08", est, "IPP-0", first="Héloïse", all_first="Héloïse"),
        adt("A31", est, "IPP-1", birth_name="DURAND"),  # unchanged
        adt("A28", est, "IPP-3", status="QUAL", ins=m.INS_NOEL, sex="M"),
        # Past the head of the group: a merge of two identities created in it...
        adt("A40", est, "IPP-3", m.mrg("IPP-2"), status="QUAL", ins=m.INS_NOEL, sex="M"),
        # ...then identity messages that read their own identity.
        adt("A28", est, "IPP-4"),
        adt("A31", est, "IPP-1", birth_name="DURAND", used="LEROY"),
    ]


async def test_a_group_of_identities_gives_what_one_by_one_gives(
    hl7_listener: Hl7Listener,
) -> None:
    answers, sql = await compare(hl7_listener, accepted)
    assert [a[0] for a in answers] == ["AA"] * 9
    # The six messages at the head: one read and one insert of identities for the
    # three they create; IPP-4, past the merge, is read and inserted alone.
    inserts = [s for s in sql if s.startswith("INSERT INTO patient_identities")]
    assert len(inserts) == 2
    state_a = await state(hl7_listener.app, "HOPA")
    identities = {row[0]: row for row in state_a["identities"]}
    assert identities["IPP-1"][4] == "DURAND" and identities["IPP-1"][6] == "LEROY"
    assert identities["IPP-2"][-1] == "IPP-3"  # merged into IPP-3
    # The ordered exam shows the new first name; the typed one kept its own patient.
    names = sorted(e[1] for e in state_a["exams"])
    assert names[0] == "DUPONT^Héloïse" and len(names) == 2


def refusals(est: str) -> list[str]:
    repeated = m.control_id()
    return [
        adt("A28", est, "IPP-5", control=repeated),
        adt("A28", est, "IPP-6", birth="20990101"),  # AE: a birth date in the future
        adt("A31", est, "IPP-5", birth_name="MOREAU"),
        adt("A28", est, "IPP-6b", birth=""),  # AE: no birth date
        # The first message's control ID again, other content: its ACK, nothing changed.
        adt("A28", est, "IPP-7", control=repeated),
        adt("A28", est, "IPP-8"),
        adt("A08", est, "IPP-0", birth_name="PETIT"),
    ]


async def test_refusals_and_repeats_in_a_group_of_identities(
    hl7_listener: Hl7Listener,
) -> None:
    answers, _sql = await compare(hl7_listener, refusals)
    assert [a[0] for a in answers] == ["AA", "AE", "AA", "AE", "AA", "AA", "AA"]
    assert answers[4] == answers[0]
    ipps = {row[0] for row in (await state(hl7_listener.app, "HOPA"))["identities"]}
    assert ipps == {"IPP-0", "IPP-5", "IPP-8"}


async def test_a_message_alone_is_applied_as_a_group_of_one(hl7_listener: Hl7Listener) -> None:
    """A message alone takes the straight path of a group (server/interfaces/group.py):
    its identity, its stored ACK and its audit rows are inserted as statements of
    their own: the session's unit of work has nothing to flush."""
    flushes: list[int] = []

    def flushed(*_args: Any) -> None:
        flushes.append(1)

    event.listen(Session, "after_flush", flushed)
    try:
        with commits(hl7_listener.app) as seen:
            acks = await hl7_listener.send(adt("A28", "HOPA", "IPP-9"))
    finally:
        event.remove(Session, "after_flush", flushed)
    assert [ack_code(a) for a in acks] == ["AA"]
    assert len(seen) == 1 and not flushes
    assert await hl7_listener.count(PatientIdentity, PatientIdentity.ipp == "IPP-9") == 1
