"""The identity feed (docs/hl7.md "Inbound", IHE PAM national extension): ADT
A28/A31/A01/A04/A08 create or update, A40 merges, A47 changes the identifier."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import hl7
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import EventKind
from server.core.models import PatientIdentity
from server.interfaces import hl7_in
from server.interfaces.effects import Effects, room_event, who
from server.interfaces.hl7_in import Hl7Error
from server.interfaces.senders import Sender
from server.patients import service as patients
from server.patients.service import PatientError
from server.priors import service as priors

#: The ADT events that create or update an identity and do nothing else.
UPSERT_EVENTS = frozenset({"A01", "A04", "A08", "A28", "A31"})
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


def checked(traits: patients.Traits, now: datetime) -> patients.Traits:
    """The traits of PID by the identity rules (docs/patients.md), or the AE naming them."""
    try:
        return patients.check(traits, now.date())
    except PatientError as exc:
        raise trait_error(exc) from None


def trait_error(exc: PatientError) -> Hl7Error:
    """A refused trait as the AE that names its field."""
    seg, f = TRAIT_FIELDS.get(exc.field, ("PID", 3))
    return Hl7Error("AE", hl7_in.DATA_TYPE_ERROR, exc.message, seg, f)


async def upsert_identity(
    db: AsyncSession,
    sender: Sender,
    traits: patients.Traits,
    now: datetime,
    e: Effects,
    known: patients.Known | None = None,
) -> PatientIdentity:
    """Create or update the identity of PID; the exams showing it hear of it.
    ``known``: the identities read ahead for a group (:func:`read_ahead`)."""
    traits = checked(traits, now)
    try:
        row, outcome, exams = await patients.upsert(db, sender.establishment_id, traits, now, known)
    except PatientError as exc:
        raise trait_error(exc) from None
    e.detail["ipp"] = row.ipp
    if outcome == "unchanged":
        return row
    await priors.follow_identity(db, sender.establishment_id, exams, row, now)
    e.audit(
        action=f"patient.{outcome}",
        username=who(sender),
        at=now,
        detail={"ipp": row.ipp, "status": row.identity_status, "exams": exams},
    )
    for exam_id in exams:
        await room_event(db, sender, exam_id, EventKind.PATIENT_UPDATED, row, now, e)
    return row


def identity_only(trigger: str, msg: hl7.Message) -> patients.Traits | None:
    """The traits of a message that only creates or updates an identity (A28, A31,
    A01, A04, A08), read once; None for any other message, or one whose PID is
    refused (applied as usual, it gets its AE)."""
    if trigger not in UPSERT_EVENTS:
        return None
    try:
        return hl7_in.patient(msg)
    except Hl7Error:
        return None


async def read_ahead(
    db: AsyncSession, pending: Sequence[tuple[Sender, patients.Traits]]
) -> patients.Known:
    """The identities a run of :func:`identity_only` messages names, in one SELECT."""
    return await patients.read_ahead(
        db, [(sender.establishment_id, traits.ipp) for sender, traits in pending]
    )


async def apply_adt(
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
            raise trait_error(exc) from None
        await priors.follow_identity(db, sender.establishment_id, exams, row, now)
        e.audit(
            action="patient.identifier_changed",
            username=who(sender),
            at=now,
            detail={"from": old, "to": row.ipp, "exams": exams},
        )
        e.detail["from_ipp"] = old
        for exam_id in exams:
            await room_event(
                db, sender, exam_id, EventKind.PATIENT_UPDATED, row, now, e, previous_ipp=old
            )
        # The traits sent with the new identifier apply too.
        await upsert_identity(db, sender, traits, now, e)
        return
    survivor = await upsert_identity(db, sender, traits, now, e)
    if trigger != "A40":
        return
    old = hl7_in.prior_id(msg)
    try:
        merged, moved = await patients.merge(db, sender.establishment_id, survivor, old, now)
    except patients.NotFound:
        raise Hl7Error("AE", hl7_in.UNKNOWN_KEY_IDENTIFIER, f"no patient {old}", "MRG", 1) from None
    except PatientError as exc:
        raise trait_error(exc) from None
    await priors.follow_identity(db, sender.establishment_id, moved, survivor, now)
    e.audit(
        action="patient.merged",
        username=who(sender),
        at=now,
        detail={"merged": merged.ipp, "into": survivor.ipp, "exams": moved},
    )
    for exam_id in moved:
        await room_event(
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
