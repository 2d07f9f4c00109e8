"""Applying inbound HL7 v2 messages (docs/hl7.md "Inbound"): one message, one
transaction, one acknowledgement.

:meth:`Inbound.handle` takes the bytes of one MLLP block and returns the bytes of
its ACK. The sender must be registered (server/interfaces/senders.py), else AR.
Its changes, its stored ACK and its audit rows are one transaction: when anything
in the message is wrong the transaction is rolled back whole, so nothing is
half-applied, and the AE that says why is stored and audited in a transaction of
its own. A message whose control ID this sender used before meets the unique key of
``hl7_messages`` at the commit, and gets the stored ACK again, having changed
nothing. Exam events are published after the commit, through
server/exams/publish.py like every other writer's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hl7
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.channels import notify
from server.core.context import AppContext
from server.core.db import is_sqlite
from server.core.models import ExamEvent
from server.exams import routing
from server.exams.publish import publish_events
from server.interfaces import hl7_in
from server.interfaces.effects import Effects, who
from server.interfaces.hl7_in import Header, Hl7Error
from server.interfaces.identities import apply_adt
from server.interfaces.orders import apply_order
from server.interfaces.senders import Hl7Message, Sender, recognise

log = logging.getLogger("teleimagerie.hl7")
#: How long a sender's registration is kept in memory by a running listener.
SENDER_TTL_S = 5.0


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of the connection."""

    addr: str
    cert_subject: str | None = None


class Inbound:
    """The inbound message service of one process, over its AppContext."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._senders: dict[tuple[str, str], tuple[float, Sender | str]] = {}
        # SQLite has one writer at a time: messages queue here, in order, rather
        # than in SQLite's busy handler, which sleeps between its retries.
        self._write_lock: asyncio.Lock | None = (
            asyncio.Lock() if is_sqlite(app.settings.database_url) else None
        )

    async def handle(self, block: bytes, peer: Peer) -> tuple[bytes, Effects | None]:
        """The ACK of one block, and what to publish once it is sent (:meth:`publish`):
        the message is committed by then, so the sender need not wait for the rooms."""
        try:
            msg, codec = hl7_in.decode(block)
            head = hl7_in.header(msg, codec)
        except Hl7Error as exc:
            known = _parsed_or_none(block)
            await self._refused(peer, None, exc, {"reason": exc.message})
            return hl7_in.ack(known, exc.ack_code, exc).encode("latin-1", "replace"), None
        effects: Effects | None = None
        try:
            text, effects = await self._handle(msg, head, peer)
        except Exception:
            log.exception("an inbound HL7 message could not be applied")
            failure = Hl7Error(
                "AR", hl7_in.APPLICATION_INTERNAL_ERROR, "internal error, send again"
            )
            text = hl7_in.ack(msg, "AR", failure)
        return text.encode(codec, "replace"), effects

    async def publish(self, effects: Effects | None) -> None:
        """After the ACK: the committed exam events to the rooms (re-planning their
        escalation timers), the new requests to the radiologists and coordinators.
        Exam events are never lost: a room replays from SQL, the worker's rebuild
        re-plans timers (docs/architecture.md "Events leave a transaction in one place")."""
        if effects is None:
            return
        by_exam: dict[str, list[ExamEvent]] = {}
        for exam_id, event in effects.events:
            by_exam.setdefault(exam_id, []).append(event)
        # The exams the message created, loaded before its commit.
        created = {exam.id: exam for exam, _choice in effects.routed}
        for exam_id, events in by_exam.items():
            new = created.get(exam_id)
            await publish_events(self.app, new or exam_id, events, created=new is not None)
        for exam, choice in effects.routed:
            await routing.announce(self.app, exam, choice)
        for users, body in effects.drafts:
            await notify(self.app, "order.draft", None, body, users=users)

    async def _refused(
        self, peer: Peer, head: Header | None, exc: Hl7Error, extra: dict[str, Any]
    ) -> None:
        detail = {"addr": peer.addr, "error": exc.error, "where": exc.where, **extra}
        if head is not None:
            detail.update(
                application=head.application,
                facility=head.facility,
                type=head.message_type,
                control_id=head.control_id,
            )
        log.info("hl7 message refused: %s", {k: v for k, v in detail.items() if k != "addr"})
        await audit.record(
            self.app,
            action="hl7.message",
            outcome="denied",
            addr=peer.addr,
            username="hl7",
            at=self.app.now(),
            detail=detail,
        )

    async def _sender(self, head: Header) -> Sender | str:
        """The registered sender, kept for SENDER_TTL_S: a registration or a contract
        change reaches a running listener within that delay."""
        key = (head.application, head.facility)
        now = time.monotonic()
        cached = self._senders.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.app.read() as db:
            found = await recognise(db, head.application, head.facility)
        if len(self._senders) > 1000:
            self._senders.clear()
        self._senders[key] = (now + SENDER_TTL_S, found)
        return found

    async def _handle(
        self, msg: hl7.Message, head: Header, peer: Peer
    ) -> tuple[str, Effects | None]:
        sender = await self._sender(head)
        if isinstance(sender, str) or (
            sender.cert_subject is not None and sender.cert_subject != peer.cert_subject
        ):
            reason = sender if isinstance(sender, str) else "client certificate does not match"
            exc = Hl7Error("AR", hl7_in.UNKNOWN_KEY_IDENTIFIER, reason, "MSH", 4)
            await self._refused(peer, head, exc, {"reason": reason})
            return hl7_in.ack(msg, "AR", exc), None
        try:
            if self._write_lock is None:
                text, effects = await self._apply_once(msg, head, peer, sender)
            else:
                async with self._write_lock:
                    text, effects = await self._apply_once(msg, head, peer, sender)
        except IntegrityError:
            # The same message on another connection (or process), applied just before.
            again = await self._stored(sender, head.control_id)
            if again is None:
                raise
            return again, None
        return text, effects

    async def _apply_once(
        self, msg: hl7.Message, head: Header, peer: Peer, sender: Sender
    ) -> tuple[str, Effects]:
        """One transaction: the duplicate check, the changes, the stored ACK and the
        audit rows. A message refused midway is rolled back whole, and its AE stored
        and audited in a transaction of its own."""
        now = self.app.now()
        effects = Effects()
        error: Hl7Error | None = None
        async with self.app.db() as db:
            # A control ID this sender used before is caught by the unique key of
            # hl7_messages at the commit (the caller then answers with the stored ACK):
            # no read before every message for what seldom happens.
            try:
                hl7_in.supported(head)
                await self._apply(db, sender, head, msg, now, effects)
            except Hl7Error as exc:
                await db.rollback()
                error, effects = exc, Effects()
            code = "AA" if error is None else error.ack_code
            text = hl7_in.ack(msg, code, error, effects.warnings)
            db.add(
                Hl7Message(
                    sender_id=sender.id,
                    control_id=head.control_id,
                    message_type=head.message_type[:16],
                    ack_code=code,
                    ack=text,
                    received_at=now,
                )
            )
            detail = {
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
                addr=peer.addr,
                username=who(sender),
                at=now,
                detail=detail,
            )
            # A new exam's JSON names the site and the people: loaded in this
            # transaction (the session keeps it past the commit) rather than in a
            # second one after it; before the audit rows, which come last.
            for exam, _choice in effects.routed:
                await db.refresh(exam)
            await audit.record_many(db, effects.audits)
            await db.commit()
        return text, effects

    async def _stored(self, sender: Sender, control_id: str) -> str | None:
        async with self.app.read() as db:
            return await db.scalar(_stored_ack(sender, control_id))

    # -- applying ---------------------------------------------------------

    async def _apply(
        self,
        db: AsyncSession,
        sender: Sender,
        head: Header,
        msg: hl7.Message,
        now: datetime,
        effects: Effects,
    ) -> None:
        if head.message_code == "ADT":
            await apply_adt(db, sender, head.trigger, msg, now, effects)
        else:
            await apply_order(self.app.settings, db, sender, msg, now, effects)


def _stored_ack(sender: Sender, control_id: str) -> Select[Any]:
    return select(Hl7Message.ack).where(
        Hl7Message.sender_id == sender.id, Hl7Message.control_id == control_id
    )


def _parsed_or_none(block: bytes) -> hl7.Message | None:
    """The message when at least its MSH could be read, to answer it properly."""
    try:
        msg = hl7.parse(block.replace(b"\n", b"\r").strip().decode("latin-1"))
        msg.segment("MSH")
        return msg
    except Exception:
        return None
