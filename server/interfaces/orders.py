"""Imaging orders in (docs/hl7.md "Orders"): ORM^O01 and OMI^O23, ``NW`` requests the
exam through the form's service or keeps a draft, ``CA`` cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import hl7
from pydantic import ValidationError
from sqlalchemy import CompoundSelect, bindparam, exists, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.lifecycle import Command, LifecycleError, decide, sources
from rooms.types import ExamStatus, Role
from server.core.config import Settings
from server.core.errors import ApiError
from server.core.models import Exam, PatientIdentity, User
from server.exams import owed, routing
from server.exams.service import (
    ExamRequest,
    Requester,
    Requests,
    append_event,
    check_onset,
    create_exam,
)
from server.interfaces import hl7_in
from server.interfaces.drafts import OrderDraft
from server.interfaces.effects import Effects, who
from server.interfaces.hl7_in import Hl7Error
from server.interfaces.identities import upsert_identity
from server.interfaces.senders import Sender
from server.patients import service as patients

#: Where each field of an exam request comes from in an order.
REQUEST_FIELDS = {
    "modality": ("OBR", 24),
    "body_part": ("OBR", 4),
    "clinical_question": ("OBR", 31),
    "urgency": ("TQ1", 9),
    "consent": ("OBX", 5),
    "contraindications": ("OBX", 5),
    "patient": ("PID", 3),
    "stroke": ("OBR", 31),
}


async def apply_order(
    settings: Settings,
    db: AsyncSession,
    sender: Sender,
    msg: hl7.Message,
    now: datetime,
    e: Effects,
    router: routing.Router | None = None,
) -> None:
    """An order: its patient first (as A31), then ``NW`` or ``CA``."""
    traits = hl7_in.patient(msg)
    request = hl7_in.order(msg)
    patient = await upsert_identity(db, sender, traits, now, e)
    await place(settings, db, sender, request, patient, now, e, router)


def new_order(
    head: hl7_in.Header, msg: hl7.Message
) -> tuple[patients.Traits, hl7_in.Order] | tuple[None, None]:
    """The patient and the request of a new order (``NW``) that reads well, read
    once; ``(None, None)`` for any other message (applied as usual, it gets its
    AE when it does not read well)."""
    try:
        hl7_in.supported(head)
        traits, request = hl7_in.patient(msg), hl7_in.order(msg)
    except Hl7Error:
        return None, None
    if request.control != "NW":
        return None, None
    return traits, request


async def place(
    settings: Settings,
    db: AsyncSession,
    sender: Sender,
    request: hl7_in.Order,
    patient: PatientIdentity,
    now: datetime,
    e: Effects,
    router: routing.Router | None = None,
    batch: Batch | None = None,
) -> None:
    """The order once its patient is known: ``NW`` requests the exam or keeps a
    draft, ``CA`` cancels. ``router``: the routing of the order's group, whose
    requests are made at ``now`` (a new one when None); ``batch``: the new orders
    at the head of a group, whose exams are written together."""
    router = router or routing.Router(now)
    e.detail["placer_order_number"] = request.placer_number
    if request.control == "CA":
        router.forget()  # an exam cancelled no longer counts in its radiologist's load
        await cancel(db, sender, request.placer_number, now, e)
        return
    key = (sender.establishment_id, request.placer_number)
    if (
        key in batch.placed
        if batch is not None
        else await placed(db, sender.establishment_id, request.placer_number)
    ):
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
            patient_identity_id=patient.id,
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
        if batch is not None:
            batch.placed.add(key)
        e.audit(
            action="order.draft",
            username=who(sender),
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
                    "id": patient.ipp,
                    "name": patients.dicom_name(patient)[:200],
                    "birth_date": patient.birth_date,
                    "sex": patient.sex,
                },
                "modality": request.modality,
                "body_part": request.body_part,
                "clinical_question": request.clinical_question,
                "urgency": request.urgency,
                "consent": request.consent,
                "contraindications": request.contraindications,
                "stroke": (
                    {"onset_at": request.stroke_onset_at, "onset_kind": request.stroke_kind}
                    if request.stroke_kind
                    else None
                ),
            }
        )
        if req.stroke is not None and req.stroke.onset_at is not None:
            check_onset(req.stroke.onset_at, now)
    except ApiError as exc:  # an implausible onset (docs/stroke.md "The alert")
        raise Hl7Error("AE", hl7_in.DATA_TYPE_ERROR, exc.message, "OBX", 5) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "patient"
        seg, f = REQUEST_FIELDS.get(name, ("OBR", 4))
        raise Hl7Error("AE", hl7_in.DATA_TYPE_ERROR, f"{name}: {first['msg']}", seg, f) from None
    requester = await requester_for(db, sender, request.ordering_provider)
    choice = await router.route(db, sender.establishment_id)
    if batch is not None:
        batch.placed.add(key)
    exam, event = await create_exam(
        db,
        settings,
        requester,
        req,
        now,
        choice.radiologist_id,
        identity_id=patient.id,
        placer_order_number=request.placer_number,
        batch=batch.requests if batch is not None else None,
    )
    e.audit(
        action="exam.request",
        username=who(sender),
        exam_id=exam.id,
        at=now,
        detail={"via": "hl7", "placer": request.placer_number, "requester": requester.id},
    )
    e.events.append((exam.id, event))
    e.routed.append((exam, choice))
    e.detail["exam"] = exam.id


async def cancel(db: AsyncSession, sender: Sender, placer: str, now: datetime, e: Effects) -> None:
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
            raise Hl7Error("AE", hl7_in.APPLICATION_INTERNAL_ERROR, str(exc), "ORC", 1) from None
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
        # The results' cancellation goes to the destinations too (docs/hl7.md "Outbound").
        await owed.enqueue(db, exam, move.event_kind, now)
        e.audit(
            action="command.cancel",
            username=who(sender),
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
        username=who(sender),
        at=now,
        detail={"draft": draft.id, "placer": placer},
    )
    e.detail["draft"] = draft.id


# Whether an order with the placer number ``:placer`` of the establishment ``:est``
# became an exam or waits as a draft (built once: see server/roster/service.py).
_PLACED = select(
    or_(
        exists(
            select(Exam.id).where(
                Exam.establishment_id == bindparam("est"),
                Exam.placer_order_number == bindparam("placer"),
            )
        ),
        exists(
            select(OrderDraft.id).where(
                OrderDraft.establishment_id == bindparam("est"),
                OrderDraft.placer_order_number == bindparam("placer"),
                OrderDraft.status != "cancelled",
            )
        ),
    )
)


@dataclass
class Batch:
    """The new orders (``NW``) at the head of a group (server/interfaces/group.py):
    whether their placer numbers were received already is read in one SELECT
    (:meth:`read`), and their exams are written together (``requests.write``)."""

    #: (establishment, placer number) of the orders that became an exam or a draft,
    #: before the group or in it.
    placed: set[tuple[int, str]] = field(default_factory=set)
    requests: Requests = field(default_factory=Requests)

    @classmethod
    async def read(cls, db: AsyncSession, keys: Sequence[tuple[int, str]]) -> Batch:
        batch = cls()
        placers = sorted({placer for _est, placer in keys})
        if placers:
            sites = sorted({est for est, _placer in keys})
            rows = await db.execute(_PLACED_AMONG, {"sites": sites, "placers": placers})
            batch.placed.update((row[0], row[1]) for row in rows)
        return batch


# The orders among ``:placers`` of the establishments ``:sites`` that became an exam or
# wait as a draft (built once). Both columns are named: the indexes that find them
# begin with the establishment, so a placer number alone would be a scan of every exam.
_PLACED_AMONG: CompoundSelect[Any] = union_all(
    select(Exam.establishment_id, Exam.placer_order_number).where(
        Exam.establishment_id.in_(bindparam("sites", expanding=True)),
        Exam.placer_order_number.in_(bindparam("placers", expanding=True)),
    ),
    select(OrderDraft.establishment_id, OrderDraft.placer_order_number).where(
        OrderDraft.establishment_id.in_(bindparam("sites", expanding=True)),
        OrderDraft.placer_order_number.in_(bindparam("placers", expanding=True)),
        OrderDraft.status != "cancelled",
    ),
)


async def placed(db: AsyncSession, establishment_id: int, placer: str) -> bool:
    """Whether an order with this placer number became an exam or waits as a draft."""
    return bool(await db.scalar(_PLACED, {"est": establishment_id, "placer": placer}))


@dataclass(frozen=True)
class Account:
    """A sender's interface account as a requester: an urgentist account of the
    sender's establishment (server/interfaces/senders.py), whose row need not be read."""

    id: int
    establishment_id: int


async def requester_for(db: AsyncSession, sender: Sender, provider: str | None) -> Requester:
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
    return Account(sender.account_id, sender.establishment_id)
