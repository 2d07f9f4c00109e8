"""Messages that arrive together are committed together (docs/hl7.md
"Acknowledgements", server/interfaces/group.py), each still all or nothing: in a
group, a message refused or repeated leaves the others applied and itself not at all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hl7
from sqlalchemy import event, select

from server.core import audit
from server.core.audit import AuditEntry
from server.core.context import AppContext
from server.core.models import Exam, PatientIdentity
from server.interfaces.inbound import Inbound, Peer
from server.interfaces.senders import Hl7Message
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code, err

PEER = Peer(addr="127.0.0.1")


@contextmanager
def commits(app: AppContext) -> Iterator[list[int]]:
    """The COMMITs the database saw inside the block (one item each)."""
    seen: list[int] = []

    def count(_conn: Any) -> None:
        seen.append(1)

    event.listen(app.sql.sync_engine, "commit", count)
    try:
        yield seen
    finally:
        event.remove(app.sql.sync_engine, "commit", count)


async def together(inbound: Inbound, *texts: str) -> list[hl7.Message]:
    """The messages handed to the listener's service at the same moment, as ten
    connections' messages arrive; their ACKs, parsed."""
    replies = await asyncio.gather(*(inbound.handle(t.encode(), PEER) for t in texts))
    return [hl7.parse(reply.decode()) for reply, _effects in replies]


async def ipps(hl7_listener: Hl7Listener) -> set[str]:
    async with hl7_listener.app.read() as db:
        return set(await db.scalars(select(PatientIdentity.ipp)))


async def test_a_refused_message_in_a_group_leaves_the_others_applied(
    hl7_listener: Hl7Listener,
) -> None:
    app, inbound = hl7_listener.app, hl7_listener.listener.inbound
    # An order already received, so that its placer number is refused again below;
    # this also puts the sender in the listener's cache (no read before the group).
    [first] = await hl7_listener.send(m.order(m.control_id(), "CMD-G0", m.pid("IPP-G0")))
    assert ack_code(first) == "AA"
    repeated = m.control_id()
    texts = [
        m.adt("A28", repeated, m.pid("IPP-G1", status="PROV", ins=None)),
        # Its patient IPP-G2 is written before the placer number is found taken: AE,
        # and IPP-G2 must not stay (nothing half-applied).
        m.order(m.control_id(), "CMD-G0", m.pid("IPP-G2", status="PROV", ins=None)),
        m.adt("A28", m.control_id(), m.pid("IPP-G3", status="PROV", ins=None)),
        m.adt("A99", m.control_id(), m.pid("IPP-G4", status="PROV", ins=None)),
        # The first message's control ID again, other content: its ACK, nothing changed.
        m.adt("A28", repeated, m.pid("IPP-G1", birth_name="AUTRE", status="PROV", ins=None)),
        m.order(m.control_id(), "CMD-G5", m.pid("IPP-G5", status="PROV", ins=None)),
    ]
    with commits(app) as seen:
        acks = await together(inbound, *texts)
    assert len(seen) == 1  # one transaction for the six
    assert [ack_code(a) for a in acks] == ["AA", "AE", "AA", "AR", "AA", "AA"]
    assert err(acks[1]) == ("ORC^1^2", "205")
    assert err(acks[3]) == ("MSH^1^9", "201")
    assert str(acks[4]) == str(acks[0])  # the stored ACK, word for word
    assert await ipps(hl7_listener) == {"IPP-G0", "IPP-G1", "IPP-G3", "IPP-G5"}
    async with app.read() as db:
        g1 = await db.scalar(select(PatientIdentity).where(PatientIdentity.ipp == "IPP-G1"))
        placers = set(await db.scalars(select(Exam.placer_order_number)))
        stored = list(await db.execute(select(Hl7Message.control_id, Hl7Message.ack_code)))
        count, _head, broken = await audit.verify(db)
        actions = list(await db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert g1 is not None and g1.birth_name == "DUPONT"
    assert placers == {"CMD-G0", "CMD-G5"}
    # Every message's answer kept once, the refusals' too; the repeat adds none.
    assert sorted(code for _c, code in stored) == ["AA", "AA", "AA", "AA", "AE", "AR"]
    assert broken is None and count == len(actions)
    assert actions.count("hl7.message") == 6
    assert actions.count("exam.request") == 2
    assert actions.count("patient.created") == 4  # IPP-G0, G1, G3, G5; never G2 nor G4


async def test_accepted_messages_arriving_together_commit_once(
    hl7_listener: Hl7Listener,
) -> None:
    app, inbound = hl7_listener.app, hl7_listener.listener.inbound
    [warm] = await hl7_listener.send(m.adt("A28", m.control_id(), m.pid("IPP-H0")))
    assert ack_code(warm) == "AA"
    texts = [m.adt("A28", m.control_id(), m.pid(f"IPP-H{i}")) for i in range(1, 9)]
    texts.append(m.order(m.control_id(), "CMD-H9", m.pid("IPP-H9")))
    with commits(app) as seen:
        acks = await together(inbound, *texts)
    assert len(seen) == 1
    assert [ack_code(a) for a in acks] == ["AA"] * 9
    assert await ipps(hl7_listener) == {f"IPP-H{i}" for i in range(10)}
    assert await hl7_listener.count(Exam) == 1
    async with app.read() as db:
        _count, _head, broken = await audit.verify(db)
    assert broken is None


async def test_ten_connections_with_refusals_apply_exactly_the_accepted(
    hl7_listener: Hl7Listener,
) -> None:
    """Over real MLLP connections: however the messages fall into groups, each
    connection's accepted messages are applied and its refused one is not."""

    def feed(c: int) -> list[str]:
        return [
            m.adt("A28", m.control_id(), m.pid(f"IPP-K{c}-1", status="PROV", ins=None)),
            m.adt("A28", m.control_id(), m.pid(f"IPP-K{c}-2", birth="", ins=None)),  # AE
            m.order(m.control_id(), f"CMD-K{c}", m.pid(f"IPP-K{c}-3", status="PROV", ins=None)),
        ]

    results = await asyncio.gather(*(hl7_listener.send(*feed(c)) for c in range(10)))
    for acks in results:
        assert [ack_code(a) for a in acks] == ["AA", "AE", "AA"]
    expected = {f"IPP-K{c}-{n}" for c in range(10) for n in (1, 3)}
    assert await ipps(hl7_listener) == expected
    assert await hl7_listener.count(Exam) == 10
    assert await hl7_listener.count(Hl7Message) == 30


async def test_a_group_waits_only_for_the_connections_still_open(
    hl7_listener: Hl7Listener,
) -> None:
    """Each connection's last message is remembered while it is open, to know how many
    messages a group may wait for (server/interfaces/inbound.py), and forgotten when
    it closes: a connection gone is never waited for."""
    inbound = hl7_listener.listener.inbound
    feeds = [
        [m.adt("A28", m.control_id(), m.pid(f"IPP-L{c}-{n}")) for n in range(3)] for c in range(4)
    ]
    results = await asyncio.gather(*(hl7_listener.send(*feed) for feed in feeds))
    assert [[ack_code(a) for a in acks] for acks in results] == [["AA"] * 3] * 4
    for _ in range(100):  # each connection's task ends once its peer has closed
        if not inbound._last:
            break
        await asyncio.sleep(0.01)
    assert inbound._last == {}
    assert await hl7_listener.count(PatientIdentity) == 12
