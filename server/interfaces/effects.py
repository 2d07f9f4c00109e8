"""What one inbound HL7 message did (docs/hl7.md "Inbound"): gathered while it is
applied, audited in its transaction, published once it is committed and acknowledged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import EventKind
from server.core import audit
from server.core.audit import Entry
from server.core.models import Exam, ExamEvent, PatientIdentity
from server.exams import routing
from server.exams.service import append_event
from server.interfaces.senders import Sender


@dataclass
class Effects:
    """What a message did, to publish and audit once committed."""

    events: list[tuple[str, ExamEvent]] = field(default_factory=list)
    routed: list[tuple[Exam, routing.Choice]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    audits: list[Entry] = field(default_factory=list)
    # (user ids, body) of the drafts to announce to the establishment's urgentists.
    drafts: list[tuple[list[int], dict[str, Any]]] = field(default_factory=list)

    def audit(self, **fields: Any) -> None:
        """An audit row of this message's transaction (written with the others)."""
        self.audits.append(audit.make_entry(**fields))


def who(sender: Sender) -> str:
    return f"hl7:{sender.application}/{sender.facility}"[:64]


async def room_event(
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
