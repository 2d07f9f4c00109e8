"""Messages that arrived together, applied in one transaction (docs/hl7.md
"Acknowledgements").

The listener hands every recognised message to one queue (server/core/batching.py);
the messages that arrived on any connection while the previous group was being
written are applied together: one ``BEGIN``, one read of the audit chain's head, one
insert of the stored ACKs and audit rows, one ``COMMIT`` for the group. No ACK leaves
before that commit: an ACK is a promise that the message is durable.

Each message stays all or nothing. A group is first applied straight through; if any
of its messages is refused (AE/AR), meets a control ID used before, or fails, the
transaction is rolled back whole and the group applied again carefully, each message
inside a savepoint of its own (SQL ``SAVEPOINT``): a message that fails is rolled back
to its savepoint alone, its AE or AR stored, and the others are applied and committed.
A message alone in its group is its own transaction, as it always was; it too is
applied straight first (the statements of a group, without the session's unit of
work, cost less), and again on its own, without a savepoint, when it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hl7
from sqlalchemy import Select, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.context import AppContext
from server.core.models import Exam, PatientIdentity
from server.exams.routing import Router
from server.interfaces import hl7_in
from server.interfaces.effects import Effects, who
from server.interfaces.hl7_in import Header, Hl7Error, Order
from server.interfaces.identities import apply_adt, identity_only, read_ahead, upsert_identity
from server.interfaces.orders import Batch, apply_order, new_order, place
from server.interfaces.senders import Hl7Message, Sender
from server.patients.service import Traits, write_new

log = logging.getLogger("teleimagerie.hl7")
#: The ACK of a message and what to publish once it is sent (None: nothing).
Outcome = tuple[str, Effects | None]


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of the connection."""

    addr: str
    cert_subject: str | None = None
    #: The listener's number for the connection (0: none, a message handed in directly).
    connection: int = 0


@dataclass(frozen=True)
class Received:
    """A parsed message from a recognised sender, waiting for its group."""

    msg: hl7.Message
    head: Header
    peer: Peer
    sender: Sender


#: The stored ACKs' insert, built once: the table's, not the class's (the session
#: would insert them one by one to read back ids nobody needs).
_STORED = Hl7Message.__table__
assert isinstance(_STORED, Table)
_STORE = insert(_STORED)


#: The new exams of a group with what their JSON shows (their joined relations). The
#: session's objects keep the columns they were created with: the read fills in
#: only what they lack, their relations, and does not build again every row's site,
#: people and identity, which the session holds already (``populate_existing``
#: would, and would show an exam cancelled later in the group as cancelled in the
#: notifications of its request, where one by one it was requested).
_CREATED = select(Exam).where(Exam.id.in_(bindparam("ids", expanding=True)))


class _Again(Exception):
    """The straight run of a group met a refusal or a failure: apply it carefully."""


async def apply_group(app: AppContext, items: Sequence[Received]) -> list[Outcome]:
    """The outcome of each message of ``items``, in order, once they are committed."""
    now = app.now()
    try:
        return await _straight(app, items, now)
    except _Again:
        return await _careful(app, items, now)


async def _straight(app: AppContext, items: Sequence[Received], now: datetime) -> list[Outcome]:
    """Every message applied in turn, no savepoint: the common case, a feed of messages
    that are all accepted. Anything else rolls the whole group back. The stored ACKs
    are inserted together at the end, in one statement (the session's unit of work
    would insert them one by one to read back their ids), where a repeated control ID
    meets the unique key.

    The identity feed's messages and the new orders at the head of the group have
    their identities read in one SELECT and the new ones inserted in one statement
    (``server.patients.service.read_ahead``); the messages after the first of any
    other kind, which may change identities otherwise, each read their own. The
    orders at the head then have their placer numbers checked in one SELECT and
    their exams inserted together (``orders.Batch``); every order of the group is
    routed by one ``Router`` (docs/roster.md "Routing")."""
    async with app.db() as db:
        done: list[Outcome] = []
        applied: list[Effects] = []
        stored: list[dict[str, Any]] = []

        def accepted(item: Received, effects: Effects) -> None:
            text = hl7_in.ack(item.msg, "AA", None, effects.warnings)
            stored.append(_keep(item, now, text, effects))
            done.append((text, effects))
            applied.append(effects)

        try:
            lead = _identities_first(items)
            known = await read_ahead(db, [(item.sender, traits) for item, traits, _ in lead])
            router = Router(now)
            patients: list[PatientIdentity] = []
            lead_effects: list[Effects] = []
            for item, traits, _request in lead:
                effects = Effects()
                lead_effects.append(effects)
                patients.append(await upsert_identity(db, item.sender, traits, now, effects, known))
            # The new identities of the orders get their ids as they are inserted.
            await write_new(db, known, ids=any(order for _, _, order in lead))
            batch = await Batch.read(
                db,
                [(item.sender.establishment_id, o.placer_number) for item, _, o in lead if o],
            )
            for (item, _traits, order), effects, row in zip(
                lead, lead_effects, patients, strict=True
            ):
                if order is not None:
                    await place(
                        app.settings, db, item.sender, order, row, now, effects, router, batch
                    )
                accepted(item, effects)
            await batch.requests.write(db)
            for item in items[len(lead) :]:
                effects = Effects()
                hl7_in.supported(item.head)
                await _apply(app, db, item, now, effects, router)
                accepted(item, effects)
            await db.execute(_STORE, stored)
            await _commit(db, applied)
        except Exception as exc:  # a refusal, a control ID used before, a failure
            raise _Again from exc
        return done


def _identities_first(items: Sequence[Received]) -> list[tuple[Received, Traits, Order | None]]:
    """The leading messages of ``items`` that only create or update an identity
    (``hl7_in.supported`` holds for them), and the new orders (``NW``) among them,
    with their traits (and order) read once.

    An order's identity is written with the others before its exam is requested: the
    run stops before a message naming the identity of an order before it, so the
    exam shows the identity as the order left it, as if each message were applied
    in turn."""
    lead: list[tuple[Received, Traits, Order | None]] = []
    ordered: set[tuple[int, str]] = set()
    for item in items:
        order = None
        if item.head.message_code == "ADT":
            traits = identity_only(item.head.trigger, item.msg)
        else:
            traits, order = new_order(item.head, item.msg)
        if traits is None:
            break
        key = (item.sender.establishment_id, traits.ipp.strip())
        if key in ordered:
            break
        if order is not None:
            ordered.add(key)
        lead.append((item, traits, order))
    return lead


async def _careful(app: AppContext, items: Sequence[Received], now: datetime) -> list[Outcome]:
    """Each message within its own savepoint (alone: its own transaction)."""
    alone = len(items) == 1
    async with app.db() as db:
        done = [await _one(app, db, item, now, alone) for item in items]
        await _commit(db, [effects for _, effects in done if effects is not None])
        return done


async def _one(
    app: AppContext, db: AsyncSession, item: Received, now: datetime, alone: bool
) -> Outcome:
    effects = Effects()
    try:
        async with _scope(db, alone):
            hl7_in.supported(item.head)
            await _apply(app, db, item, now, effects)
            text = hl7_in.ack(item.msg, "AA", None, effects.warnings)
            await db.execute(_STORE, _keep(item, now, text, effects))
        return text, effects
    except Hl7Error as exc:
        error = exc
    except IntegrityError:
        return await _again(db, item)
    except Exception:
        log.exception("an inbound HL7 message could not be applied")
        return internal_failure(item.msg), None
    # Refused: nothing of it stays but its AE/AR, stored and audited.
    effects = Effects()
    text = hl7_in.ack(item.msg, error.ack_code, error)
    try:
        async with _scope(db, alone):
            await db.execute(_STORE, _keep(item, now, text, effects, error))
    except IntegrityError:
        return await _again(db, item)
    return text, effects


@asynccontextmanager
async def _scope(db: AsyncSession, alone: bool) -> AsyncIterator[None]:
    """What one message's failure rolls back: its savepoint, or the transaction when
    it is alone in it (one statement fewer each way)."""
    if not alone:
        async with db.begin_nested():
            yield
        return
    try:
        yield
    except BaseException:
        await db.rollback()
        raise


async def _again(db: AsyncSession, item: Received) -> Outcome:
    """A control ID this sender used before (on this connection or another, in this
    group or an earlier one): the ACK it got then, having changed nothing."""
    stored = await db.scalar(stored_ack(item.sender, item.head.control_id))
    if stored is None:
        return internal_failure(item.msg), None
    return stored, None


def _keep(
    item: Received,
    now: datetime,
    text: str,
    effects: Effects,
    error: Hl7Error | None = None,
) -> dict[str, Any]:
    """The ``hl7.message`` audit row, last of the message's rows, and the columns of
    the stored ACK to insert (its unique key catches a repeated control ID)."""
    head, sender = item.head, item.sender
    code = "AA" if error is None else error.ack_code
    detail: dict[str, Any] = {
        "application": sender.application,
        "facility": sender.facility,
        "type": head.message_type,
        "control_id": head.control_id,
        "ack": code,
        **effects.detail,
    }
    if error is not None:
        detail.update(error=error.error, where=error.where, reason=error.message)
    effects.audit(
        action="hl7.message",
        outcome="ok" if error is None else "failed",
        addr=item.peer.addr,
        username=who(sender),
        at=now,
        detail=detail,
    )
    return {
        "sender_id": sender.id,
        "control_id": head.control_id,
        "message_type": head.message_type[:16],
        "ack_code": code,
        "ack": text,
        "received_at": now,
    }


async def _commit(db: AsyncSession, applied: Sequence[Effects]) -> None:
    """The group's audit rows chained in one go, last (docs/audit.md), then the commit."""
    # A new exam's JSON names the site and the people: loaded in this transaction
    # (the session keeps it past the commit) rather than in a second one after it.
    # One read for the group's new exams (the session's objects, filled in place).
    created = [exam.id for effects in applied for exam, _choice in effects.routed]
    if created:
        (await db.execute(_CREATED, {"ids": created})).scalars().all()
    await audit.record_many(db, [entry for effects in applied for entry in effects.audits])
    await db.commit()


async def _apply(
    app: AppContext,
    db: AsyncSession,
    item: Received,
    now: datetime,
    effects: Effects,
    router: Router | None = None,
) -> None:
    if item.head.message_code == "ADT":
        await apply_adt(db, item.sender, item.head.trigger, item.msg, now, effects)
    else:
        await apply_order(app.settings, db, item.sender, item.msg, now, effects, router)


def internal_failure(msg: hl7.Message) -> str:
    """AR 207, not stored: the sender sends the message again."""
    failure = Hl7Error("AR", hl7_in.APPLICATION_INTERNAL_ERROR, "internal error, send again")
    return hl7_in.ack(msg, "AR", failure)


def stored_ack(sender: Sender, control_id: str) -> Select[Any]:
    return select(Hl7Message.ack).where(
        Hl7Message.sender_id == sender.id, Hl7Message.control_id == control_id
    )
