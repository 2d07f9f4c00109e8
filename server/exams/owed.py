"""What a change to an exam owes the hospitals' systems (docs/hl7.md "Outbound").

A signature, an addendum or a cancellation writes one outbox row per message owed
to each active destination of the exam's establishment, in the transaction of that
change: the change and what it owes commit together or not at all, whichever path
made it. The rows are sent by ``server.interfaces.outbox`` (the worker); this module
only writes them, so the exams' service can call it without knowing HL7.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import EventKind
from server.core.models import Exam, Hl7Destination, OutboxMessage

ORU = "ORU^R01"
MDM = "MDM^T02"
# A destination's kinds (``hl7 add-destination --kinds``) and the message each means.
KINDS = {"oru": ORU, "mdm": MDM}
PENDING = "pending"
# What each change owes: a report or its new version goes as results and as a
# document; a cancellation has no document, only the results' cancellation.
OWED = {
    EventKind.REPORT_SIGNED: (ORU, MDM),
    EventKind.REPORT_ADDENDUM: (ORU, MDM),
    EventKind.EXAM_CANCELLED: (ORU,),
}


def new_control_id() -> str:
    """MSH-10 (ST, at most 20 characters): drawn once per message, unique."""
    return "TI" + secrets.token_hex(9).upper()


async def enqueue(
    db: AsyncSession, exam: Exam, event: str, now: datetime, version: int = 0
) -> list[OutboxMessage]:
    """Write the messages ``event`` owes to the exam's establishment's destinations,
    in the caller's transaction."""
    owed = OWED.get(EventKind(event))
    if not owed:
        return []
    dests = (
        await db.scalars(
            select(Hl7Destination)
            .where(
                Hl7Destination.establishment_id == exam.establishment_id,
                Hl7Destination.active.is_(True),
            )
            .order_by(Hl7Destination.id)
        )
    ).all()
    rows = [
        OutboxMessage(
            control_id=new_control_id(),
            destination_id=dest.id,
            establishment_id=exam.establishment_id,
            exam_id=exam.id,
            event=str(event),
            version=version,
            message_type=message_type,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for dest in dests
        for message_type in owed
        if any(KINDS[k] == message_type for k in dest.kinds.split(","))
    ]
    db.add_all(rows)
    await db.flush()
    return rows
