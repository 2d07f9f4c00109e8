"""Orders in groups (docs/hl7.md "Acknowledgements", server/interfaces/group.py): the
identities of the new orders at the head of a group are read and written with those
of the identity feed, the roster and the radiologists' load are read once for the
group, and the new exams are read back in one SELECT. Whatever the group, the
database, the timers and the ACKs must be what the same messages give one by one:
each scenario is sent as one group for establishment HOPA (sender DPI/CHU_A) and over
one connection, one message at a time, for HOPB (DPI/CHU_B), each with its own two
radiologists on duty, then the two establishments are compared."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from server.accounts.service import add_user
from server.core import audit
from server.core.audit import AuditEntry
from server.core.models import Establishment, Exam, ExamEvent, PatientIdentity, User
from server.exams.service import ExamRequest, create_exam
from server.roster.service import Shift
from tests.helpers import PASSWORD, exam_payload
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener
from tests.interfaces.test_group import commits
from tests.interfaces.test_group_identities import FACILITY, adt, answer, as_group, statements

#: Each establishment's radiologists: the first at his cap after two exams, the second not.
CAPS = (("1", 2), ("2", 50))


async def before(hl7_listener: Hl7Listener, est: str) -> None:
    """Two radiologists on duty for ``est`` alone; IPP-0 with an exam ordered for it,
    and an exam typed in the form (no identity), both with the first radiologist."""
    app, now = hl7_listener.app, hl7_listener.app.now()
    async with app.db() as db:
        est_id = await db.scalar(select(Establishment.id).where(Establishment.code == est))
        for suffix, cap in CAPS:
            rad = await add_user(
                app, db, f"rad_{est}_{suffix}", PASSWORD, "radiologist", None, f"R{est}{suffix}"
            )
            db.add(
                Shift(
                    radiologist_id=rad.id, role="primary", kind="oncall",
                    starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=12),
                    establishment_ids=[est_id], max_in_progress=cap, created_at=now,
                )
            )  # fmt: skip
        await db.commit()
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-0", m.pid("IPP-0", status="PROV", ins=None), **_at(est))
    )
    assert answer(ack)[0] == "AA"
    async with app.db() as db:
        urg = await db.scalar(select(User).where(User.username == f"urg_{est[-1].lower()}"))
        assert urg is not None
        await create_exam(db, app.settings, urg, ExamRequest.model_validate(exam_payload()), now)
        await db.commit()


def _at(est: str) -> dict[str, str]:
    return {"facility": FACILITY[est]}


def order(est: str, placer: str, ipp: str, **more: Any) -> str:
    traits = {"status": "PROV", "ins": None, **more.pop("traits", {})}
    return m.order(m.control_id(), placer, m.pid(ipp, **traits), **_at(est), **more)


async def state(hl7_listener: Hl7Listener, est: str) -> dict[str, Any]:
    """What the messages left for one establishment, in terms that do not depend on
    it: identities, exams (with their assignee), events, timers, the audit trail."""
    app = hl7_listener.app
    async with app.read() as db:
        est_id = await db.scalar(select(Establishment.id).where(Establishment.code == est))
        rows = list(
            await db.scalars(
                select(PatientIdentity).where(PatientIdentity.establishment_id == est_id)
            )
        )
        by_id = {row.id: row.ipp for row in rows}
        users = {u.id: _user(u.username, est) for u in await db.scalars(select(User))}
        exams = list(await db.scalars(select(Exam).where(Exam.establishment_id == est_id)))
        placer = {e.id: e.placer_order_number or "typed" for e in exams}
        events = [
            (placer[ev.exam_id], ev.seq, ev.kind, users.get(ev.author_id or 0), _body(ev.body))
            for ev in await db.scalars(select(ExamEvent).where(ExamEvent.exam_id.in_(list(placer))))
        ]
        trail = list(
            await db.scalars(
                select(AuditEntry)
                .where(AuditEntry.username == f"hl7:DPI/{FACILITY[est]}")
                .order_by(AuditEntry.id)
            )
        )
    timers = await app.bus.timer_claim_due(10**12, limit=10_000)
    for key, payload in timers:  # the other establishment's, for its own turn
        exam_id = next((x for x in placer if x in key), None)
        if exam_id is None:
            await app.bus.timer_schedule(key, 0, payload)
    return {
        "identities": sorted(
            (
                row.ipp,
                row.identity_status,
                row.birth_name,
                row.first_names,
                row.sex,
                row.birth_date,
            )
            for row in rows
        ),
        "exams": sorted(
            (
                placer[e.id],
                e.status,
                e.patient_id,
                e.patient_name,
                by_id.get(e.patient_identity_id) if e.patient_identity_id else None,
                users.get(e.assigned_radiologist_id or 0),
                e.modality,
                e.urgency,
            )
            for e in exams
        ),
        "events": sorted(events),
        "timers": sorted(
            (placer[x], key.replace(x, "*")) for key, _payload in timers for x in placer if x in key
        ),
        "audit": [
            (
                row.action,
                row.outcome,
                row.detail.get("ipp"),
                row.detail.get("ack"),
                row.detail.get("placer") or row.detail.get("placer_order_number"),
                row.detail.get("missing"),
                len(row.detail.get("exams", [])),
            )
            for row in trail
        ],
    }


def _user(username: str, est: str) -> str:
    """A user's name without its establishment (a sender's interface account's is
    ``hl7-<establishment>-<time>``)."""
    if username.startswith(f"hl7-{est.lower()}-"):
        return "hl7"
    return username.replace(f"_{est}", "").removesuffix(f"_{est[-1].lower()}")


def _body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("accession_number", "draft", "exam")}


async def compare(hl7_listener: Hl7Listener, script: Any) -> tuple[list[Any], list[str]]:
    """``script(est)`` sent as one group for HOPA and one by one for HOPB; the answers
    (equal for both) and the statements of the group."""
    for est in FACILITY:
        await before(hl7_listener, est)
    app = hl7_listener.app
    with commits(app) as seen, statements(app) as sql:
        grouped = await as_group(hl7_listener, script("HOPA"))
    assert len(seen) == 1  # one transaction: the messages did form one group
    state_a = await state(hl7_listener, "HOPA")
    alone = await hl7_listener.send(*script("HOPB"))
    assert [answer(a) for a in grouped] == [answer(a) for a in alone]
    assert state_a == await state(hl7_listener, "HOPB")
    async with app.read() as db:
        _count, _head, broken = await audit.verify(db)
    assert broken is None
    return [answer(a) for a in grouped], sql


def accepted(est: str) -> list[str]:
    return [
        order(est, "CMD-1", "IPP-1"),
        adt("A28", est, "IPP-2"),
        # IPP-0 shown by an exam from before: a new first name reaches it.
        order(est, "CMD-2", "IPP-0", traits={"first": "Héloïse", "all_first": "Héloïse"}),
        order(est, "CMD-3", "IPP-2", priority="A"),  # the first radiologist's cap reached
        # The identity of an order of the group again: past the head, read alone.
        adt("A31", est, "IPP-1", birth_name="DURAND"),
        order(est, "CMD-4", "IPP-4", question=None),  # a draft: no clinical question
        # The first radiologist's exam cancelled: back under his cap.
        order(est, "CMD-1", "IPP-1", order_control="CA", traits={"birth_name": "DURAND"}),
        order(est, "CMD-5", "IPP-5"),
        order(est, "CMD-6", "IPP-6"),
    ]


async def test_a_group_of_orders_gives_what_one_by_one_gives(
    hl7_listener: Hl7Listener,
) -> None:
    answers, sql = await compare(hl7_listener, accepted)
    assert [a[0] for a in answers] == ["AA"] * 9
    # The four messages at the head: one insert of their two new identities (then one
    # each for the three orders after them); the roster read once before the
    # cancellation and once after.
    assert len([s for s in sql if s.startswith("INSERT INTO patient_identities")]) == 4
    assert len([s for s in sql if "FROM shifts" in s]) == 2
    left = await state(hl7_listener, "HOPA")
    exams = {e[0]: e for e in left["exams"]}
    assignee = {placer: row[5] for placer, row in exams.items()}
    assert assignee == {
        "CMD-0": "rad_1",
        "typed": None,
        "CMD-1": "rad_1",
        "CMD-2": "rad_2",
        "CMD-3": "rad_2",
        "CMD-5": "rad_1",
        "CMD-6": "rad_2",
    }
    assert exams["CMD-1"][1] == "cancelled" and exams["CMD-2"][3] == "DUPONT^Héloïse"
    # Each exam opens with its request, signed by whoever asked for it (the interface's
    # user for an order, the urgentist for the exam typed in the form).
    requested = {(e[0], e[3]) for e in left["events"] if e[1] == 1}
    assert requested == {(placer, "urg" if placer == "typed" else "hl7") for placer in exams}


def refusals(est: str) -> list[str]:
    return [
        order(est, "CMD-7", "IPP-7"),
        order(est, "CMD-0", "IPP-8"),  # AE: a placer number received already
        order(est, "CMD-9", "IPP-9", modality="US"),  # AE: not a modality we read
        order(est, "CMD-10", "IPP-10"),
        order(est, "CMD-10", "IPP-11"),  # AE: the placer number of the order before
        order(est, "CMD-12", "IPP-12"),
    ]


async def test_refused_orders_in_a_group_leave_the_others_applied(
    hl7_listener: Hl7Listener,
) -> None:
    answers, _sql = await compare(hl7_listener, refusals)
    assert [a[0] for a in answers] == ["AA", "AE", "AE", "AA", "AE", "AA"]
    placers = {e[0] for e in (await state(hl7_listener, "HOPA"))["exams"]}
    assert placers == {"CMD-0", "typed", "CMD-7", "CMD-10", "CMD-12"}


def repeated(est: str) -> list[str]:
    return [
        order(est, "CMD-20", "IPP-20"),
        order(est, "CMD-21", "IPP-21"),
        order(est, "CMD-20", "IPP-22"),  # AE: the placer number of the first, in its group
    ]


async def test_an_order_repeated_in_its_group_is_refused(hl7_listener: Hl7Listener) -> None:
    answers, _sql = await compare(hl7_listener, repeated)
    assert [a[0] for a in answers] == ["AA", "AA", "AE"]
    placers = sorted(e[0] for e in (await state(hl7_listener, "HOPA"))["exams"])
    assert placers == ["CMD-0", "CMD-20", "CMD-21", "typed"]


async def test_what_an_order_publishes_leaves_in_one_round_trip(
    hl7_listener: Hl7Listener,
) -> None:
    """The room's events, the notifications of a new request and those of a draft
    leave in one ``publish_many`` per message, in that order (inbound.Inbound.publish)."""
    await before(hl7_listener, "HOPA")
    bus = hl7_listener.app.bus
    sent: list[list[tuple[str, Any]]] = []
    publish_many = bus.publish_many

    async def recorded(messages: list[tuple[str, Any]]) -> None:
        sent.append(list(messages))
        await publish_many(messages)

    bus.publish_many = recorded  # type: ignore[method-assign]
    try:
        [ack] = await as_group(hl7_listener, [order("HOPA", "CMD-P1", "IPP-P1")])
        assert answer(ack)[0] == "AA"
        [call] = sent
        rooms = [frame["event"]["kind"] for channel, frame in call if channel.startswith("exam:")]
        assert rooms and call[: len(rooms)] == [(c, f) for c, f in call if c.startswith("exam:")]
        told = [(channel.split(":")[0], frame["kind"]) for channel, frame in call[len(rooms) :]]
        assert told == [
            ("user", "exam.assigned"),
            ("role", "exam.assigned"),
            ("role", "exam.requested"),
        ]
        sent.clear()
        [ack] = await as_group(hl7_listener, [order("HOPA", "CMD-P2", "IPP-P2", question=None)])
        assert answer(ack)[0] == "AA"
        [call] = sent
        assert [f["kind"] for c, f in call if not c.startswith("exam:")][-1] == "order.draft"
    finally:
        del bus.publish_many


async def test_what_a_group_publishes_leaves_in_one_round_trip(
    hl7_listener: Hl7Listener,
) -> None:
    """The messages of a group are acknowledged together and their connections
    publish at once: one ``publish_many`` for the group, each message's frames in
    the group's order, and one ``timer_schedule_many`` for its new exams' timers."""
    await before(hl7_listener, "HOPA")
    bus = hl7_listener.app.bus
    sent: list[list[tuple[str, Any]]] = []
    planned: list[list[tuple[str, float, Any]]] = []
    publish_many, timer_schedule_many = bus.publish_many, bus.timer_schedule_many

    async def recorded(messages: list[tuple[str, Any]]) -> None:
        sent.append(list(messages))
        await publish_many(messages)

    async def timed(timers: list[tuple[str, float, Any]]) -> None:
        planned.append(list(timers))
        await timer_schedule_many(timers)

    bus.publish_many = recorded  # type: ignore[method-assign]
    bus.timer_schedule_many = timed  # type: ignore[method-assign]
    try:
        texts = [
            order("HOPA", "CMD-Q1", "IPP-Q1"),
            order("HOPA", "CMD-Q2", "IPP-Q2", question=None),  # a draft
            order("HOPA", "CMD-Q3", "IPP-Q3"),
        ]
        acks = await as_group(hl7_listener, texts)
        assert [answer(a)[0] for a in acks] == ["AA"] * 3
    finally:
        del bus.publish_many, bus.timer_schedule_many
    [call] = sent
    kinds = [f["event"]["kind"] if c.startswith("exam:") else f["kind"] for c, f in call]
    request = ["exam.requested", "exam.assigned", "exam.assigned", "exam.requested"]
    drafts = len(kinds) - 2 * len(request)
    assert drafts >= 1
    assert kinds == request + ["order.draft"] * drafts + request
    rooms = [c.removeprefix("exam:") for c, _f in call if c.startswith("exam:")]
    # Each new exam's JSON as read in its transaction, with its site, people and identity.
    shown = [f["exam"] for c, f in call if c == "role:radiologist"]
    assert [e["id"] for e in shown] == rooms
    assert [e["patient"]["identity"]["ipp"] for e in shown] == ["IPP-Q1", "IPP-Q3"]
    assert {e["establishment"]["code"] for e in shown} == {"HOPA"}
    assert all(e["requester"]["id"] and e["assigned_radiologist"]["id"] for e in shown)
    [timers] = planned
    assert list(dict.fromkeys(p["exam_id"] for _k, _d, p in timers)) == rooms
