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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import hl7
from pydantic import ValidationError
from sqlalchemy import Select, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.lifecycle import Command, LifecycleError, decide, sources
from rooms.types import EventKind, ExamStatus, Role
from server.core import audit
from server.core.audit import AuditEntry
from server.core.channels import notify
from server.core.context import AppContext
from server.core.db import is_sqlite
from server.core.models import Exam, ExamEvent, PatientIdentity, User
from server.exams import routing
from server.exams.publish import publish_events
from server.exams.service import ExamRequest, append_event, create_exam
from server.interfaces import hl7_in
from server.interfaces.drafts import OrderDraft
from server.interfaces.hl7_in import Header, Hl7Error
from server.interfaces.senders import Hl7Message, Sender, recognise
from server.patients import service as patients
from server.patients.service import PatientError

log = logging.getLogger("teleimagerie.hl7")
#: How long a sender's registration is kept in memory by a running listener.
SENDER_TTL_S = 5.0

#: Where each trait of an identity is read from, to name it in ERR-2.
TRAIT_FIELDS = {
    "ipp": ("PID", 3),
    "ins": ("PID", 3),
    "ins_oid": ("PID", 3),
    "birth_name": ("PID", 5),
    "first_names": ("PID", 5),
    "sex": ("PID", 8),
    "birth_date": ("PID", 7),
    "birthplace_code": ("PID", 11),
    "mrg_ipp": ("MRG", 1),
}
#: Where each field of an exam request comes from in an order.
REQUEST_FIELDS = {
    "modality": ("OBR", 24),
    "body_part": ("OBR", 4),
    "clinical_question": ("OBR", 31),
    "urgency": ("TQ1", 9),
    "consent": ("OBX", 5),
    "contraindications": ("OBX", 5),
    "patient": ("PID", 3),
}


@dataclass
class Effects:
    """What a message did, to publish and audit once committed."""

    events: list[tuple[str, ExamEvent]] = field(default_factory=list)
    routed: list[tuple[Exam, routing.Choice]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    audits: list[AuditEntry] = field(default_factory=list)
    # (user ids, body) of the drafts to announce to the establishment's urgentists.
    drafts: list[tuple[list[int], dict[str, Any]]] = field(default_factory=list)

    def audit(self, **fields: Any) -> None:
        """An audit row of this message's transaction (written with the others)."""
        self.audits.append(audit.make_entry(**fields))


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
        for exam_id, events in by_exam.items():
            await publish_events(self.app, exam_id, events)
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
                username=_who(sender),
                at=now,
                detail=detail,
            )
            await audit.record_many(db, effects.audits)
            await db.commit()
            for exam, _choice in effects.routed:  # its JSON names the site and the people
                await db.refresh(exam)
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
            await self._adt(db, sender, head.trigger, msg, now, effects)
        else:
            await self._order(db, sender, msg, now, effects)

    async def _identity(
        self, db: AsyncSession, sender: Sender, traits: patients.Traits, now: datetime, e: Effects
    ) -> PatientIdentity:
        """Create or update the identity of PID; the exams showing it hear of it."""
        traits = _checked(traits, now)
        try:
            row, outcome, exams = await patients.upsert(db, sender.establishment_id, traits, now)
        except PatientError as exc:
            raise _trait_error(exc) from None
        e.detail["ipp"] = row.ipp
        if outcome == "unchanged":
            return row
        e.audit(
            action=f"patient.{outcome}",
            username=_who(sender),
            at=now,
            detail={"ipp": row.ipp, "status": row.identity_status, "exams": exams},
        )
        for exam_id in exams:
            await self._event(db, sender, exam_id, EventKind.PATIENT_UPDATED, row, now, e)
        return row

    async def _event(
        self,
        db: AsyncSession,
        sender: Sender,
        exam_id: str,
        kind: EventKind,
        row: PatientIdentity,
        now: datetime,
        e: Effects,
        **extra: Any,
    ) -> None:
        body = {"ipp": row.ipp, "status": row.identity_status, "source": "hl7", **extra}
        event = await append_event(db, exam_id, kind, sender.account_id, body, now)
        e.events.append((exam_id, event))

    async def _adt(
        self,
        db: AsyncSession,
        sender: Sender,
        trigger: str,
        msg: hl7.Message,
        now: datetime,
        e: Effects,
    ) -> None:
        traits = hl7_in.patient(msg)
        if trigger == "A47":
            old = hl7_in.prior_id(msg)
            try:
                row, exams = await patients.change_identifier(
                    db, sender.establishment_id, old, traits.ipp, now
                )
            except patients.NotFound:
                raise Hl7Error(
                    "AE", hl7_in.UNKNOWN_KEY_IDENTIFIER, f"no patient {old}", "MRG", 1
                ) from None
            except PatientError as exc:
                raise _trait_error(exc) from None
            e.audit(
                action="patient.identifier_changed",
                username=_who(sender),
                at=now,
                detail={"from": old, "to": row.ipp, "exams": exams},
            )
            e.detail["from_ipp"] = old
            for exam_id in exams:
                await self._event(
                    db, sender, exam_id, EventKind.PATIENT_UPDATED, row, now, e, previous_ipp=old
                )
            # The traits sent with the new identifier apply too.
            await self._identity(db, sender, traits, now, e)
            return
        survivor = await self._identity(db, sender, traits, now, e)
        if trigger != "A40":
            return
        old = hl7_in.prior_id(msg)
        try:
            merged, moved = await patients.merge(db, sender.establishment_id, survivor, old, now)
        except patients.NotFound:
            raise Hl7Error(
                "AE", hl7_in.UNKNOWN_KEY_IDENTIFIER, f"no patient {old}", "MRG", 1
            ) from None
        except PatientError as exc:
            raise _trait_error(exc) from None
        e.audit(
            action="patient.merged",
            username=_who(sender),
            at=now,
            detail={"merged": merged.ipp, "into": survivor.ipp, "exams": moved},
        )
        for exam_id in moved:
            await self._event(
                db,
                sender,
                exam_id,
                EventKind.PATIENT_MERGED,
                survivor,
                now,
                e,
                merged_ipp=merged.ipp,
            )
        e.detail["merged_ipp"] = merged.ipp

    async def _order(
        self, db: AsyncSession, sender: Sender, msg: hl7.Message, now: datetime, e: Effects
    ) -> None:
        traits = hl7_in.patient(msg)
        request = hl7_in.order(msg)
        identity = await self._identity(db, sender, traits, now, e)
        e.detail["placer_order_number"] = request.placer_number
        if request.control == "CA":
            await self._cancel(db, sender, request.placer_number, now, e)
            return
        if await _placed(db, sender.establishment_id, request.placer_number):
            raise Hl7Error(
                "AE",
                hl7_in.DUPLICATE_KEY_IDENTIFIER,
                f"order {request.placer_number} was received already",
                "ORC",
                2,
            )
        if request.missing:
            draft = OrderDraft(
                establishment_id=sender.establishment_id,
                sender_id=sender.id,
                patient_identity_id=identity.id,
                placer_order_number=request.placer_number,
                modality=request.modality,
                body_part=request.body_part,
                clinical_question=request.clinical_question,
                urgency=request.urgency,
                consent=request.consent,
                contraindications=request.contraindications,
                missing=request.missing,
                status="pending",
                created_at=now,
                updated_at=now,
            )
            db.add(draft)
            await db.flush()
            e.audit(
                action="order.draft",
                username=_who(sender),
                at=now,
                detail={
                    "draft": draft.id,
                    "placer": request.placer_number,
                    "missing": request.missing,
                },
            )
            e.detail["draft"] = draft.id
            urgentists = await db.scalars(
                select(User.id).where(
                    User.establishment_id == sender.establishment_id,
                    User.role == Role.URGENTIST,
                    User.active.is_(True),
                )
            )
            body = {
                "draft": draft.id,
                "placer_order_number": request.placer_number,
                "missing": request.missing,
            }
            e.drafts.append((list(urgentists), body))
            for name in request.missing:
                seg, f = REQUEST_FIELDS[name]
                e.warnings.append(
                    (
                        f"{seg}-{f}",
                        hl7_in.REQUIRED_FIELD_MISSING,
                        f"{name} missing: kept as a draft",
                    )
                )
            return
        try:
            req = ExamRequest.model_validate(
                {
                    "patient": {
                        "id": identity.ipp,
                        "name": patients.dicom_name(identity)[:200],
                        "birth_date": identity.birth_date,
                        "sex": identity.sex,
                    },
                    "modality": request.modality,
                    "body_part": request.body_part,
                    "clinical_question": request.clinical_question,
                    "urgency": request.urgency,
                    "consent": request.consent,
                    "contraindications": request.contraindications,
                }
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "patient"
            seg, f = REQUEST_FIELDS.get(name, ("OBR", 4))
            raise Hl7Error(
                "AE", hl7_in.DATA_TYPE_ERROR, f"{name}: {first['msg']}", seg, f
            ) from None
        requester = await _requester(db, sender, request.ordering_provider)
        choice = await routing.route(db, sender.establishment_id, now)
        exam, event = await create_exam(
            db,
            self.app.settings,
            requester,
            req,
            now,
            choice.radiologist_id,
            identity_id=identity.id,
            placer_order_number=request.placer_number,
        )
        e.audit(
            action="exam.request",
            username=_who(sender),
            exam_id=exam.id,
            at=now,
            detail={"via": "hl7", "placer": request.placer_number, "requester": requester.id},
        )
        e.events.append((exam.id, event))
        e.routed.append((exam, choice))
        e.detail["exam"] = exam.id

    async def _cancel(
        self, db: AsyncSession, sender: Sender, placer: str, now: datetime, e: Effects
    ) -> None:
        est = sender.establishment_id
        exam = await db.scalar(
            select(Exam)
            .where(Exam.establishment_id == est, Exam.placer_order_number == placer)
            .order_by(Exam.created_at.desc())
        )
        if exam is not None:
            try:
                move = decide(ExamStatus(exam.status), Command.CANCEL, Role.URGENTIST)
            except LifecycleError as exc:
                raise Hl7Error(
                    "AE", hl7_in.APPLICATION_INTERNAL_ERROR, str(exc), "ORC", 1
                ) from None
            reason = "cancelled by the hospital's order (ORC-1 CA)"
            event = await append_event(
                db,
                exam.id,
                move.event_kind,
                sender.account_id,
                {"reason": reason, "previous_status": exam.status},
                now,
                from_status=sources(Command.CANCEL, move.new_status),
                changes={"status": move.new_status, "cancelled_at": now, "cancel_reason": reason},
            )
            e.audit(
                action="command.cancel",
                username=_who(sender),
                exam_id=exam.id,
                at=now,
                detail={"via": "hl7", "placer": placer},
            )
            e.events.append((exam.id, event))
            e.detail["exam"] = exam.id
            return
        draft = await db.scalar(
            select(OrderDraft).where(
                OrderDraft.establishment_id == est,
                OrderDraft.placer_order_number == placer,
                OrderDraft.status == "pending",
            )
        )
        if draft is None:
            raise Hl7Error("AE", hl7_in.UNKNOWN_KEY_IDENTIFIER, f"no order {placer}", "ORC", 2)
        draft.status = "cancelled"
        draft.updated_at = now
        e.audit(
            action="order.draft.cancel",
            username=_who(sender),
            at=now,
            detail={"draft": draft.id, "placer": placer},
        )
        e.detail["draft"] = draft.id


def _stored_ack(sender: Sender, control_id: str) -> Select[Any]:
    return select(Hl7Message.ack).where(
        Hl7Message.sender_id == sender.id, Hl7Message.control_id == control_id
    )


def _who(sender: Sender) -> str:
    return f"hl7:{sender.application}/{sender.facility}"[:64]


def _parsed_or_none(block: bytes) -> hl7.Message | None:
    """The message when at least its MSH could be read, to answer it properly."""
    try:
        msg = hl7.parse(block.replace(b"\n", b"\r").strip().decode("latin-1"))
        msg.segment("MSH")
        return msg
    except Exception:
        return None


def _checked(traits: patients.Traits, now: datetime) -> patients.Traits:
    try:
        return patients.check(traits, now.date())
    except PatientError as exc:
        raise _trait_error(exc) from None


def _trait_error(exc: PatientError) -> Hl7Error:
    seg, f = TRAIT_FIELDS.get(exc.field, ("PID", 3))
    return Hl7Error("AE", hl7_in.DATA_TYPE_ERROR, exc.message, seg, f)


async def _placed(db: AsyncSession, establishment_id: int, placer: str) -> bool:
    """Whether an order with this placer number became an exam or waits as a draft."""
    exam = select(Exam.id).where(
        Exam.establishment_id == establishment_id, Exam.placer_order_number == placer
    )
    draft = select(OrderDraft.id).where(
        OrderDraft.establishment_id == establishment_id,
        OrderDraft.placer_order_number == placer,
        OrderDraft.status != "cancelled",
    )
    return bool(await db.scalar(select(or_(exists(exam), exists(draft)))))


async def _requester(db: AsyncSession, sender: Sender, provider: str | None) -> User:
    """The urgentist of the establishment whose RPPS the order names (ORC-12), else the
    sender's interface account."""
    if provider:
        user = await db.scalar(
            select(User).where(
                User.professional_id == provider,
                User.establishment_id == sender.establishment_id,
                User.role == Role.URGENTIST,
                User.active.is_(True),
            )
        )
        if user is not None:
            return user
    return await db.get_one(User, sender.account_id)
