"""Orders received without everything an exam request needs (docs/hl7.md "Orders").

A teleradiology request carries the clinical question, the urgency and the
patient's consent (docs/design.md); a hospital's order often lacks the consent,
sometimes the question. Such an order is not refused and not dropped: it waits
here as a draft, with the identity and the placer number of the order, until an
urgentist of the establishment completes it in the browser, which then requests
the exam through the same service as the form. A cancellation (ORC-1 ``CA``)
cancels a draft as it cancels an exam.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base, PatientIdentity, new_id


class OrderDraft(Base):
    __tablename__ = "order_drafts"
    __table_args__ = (
        Index("ix_order_drafts_establishment_status", "establishment_id", "status"),
        Index("ix_order_drafts_establishment_placer", "establishment_id", "placer_order_number"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    sender_id: Mapped[int] = mapped_column(ForeignKey("hl7_senders.id"))
    patient_identity_id: Mapped[int] = mapped_column(ForeignKey("patient_identities.id"))
    placer_order_number: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(4))
    body_part: Mapped[str | None] = mapped_column(String(64))
    clinical_question: Mapped[str | None] = mapped_column(Text)
    urgency: Mapped[str | None] = mapped_column(String(16))
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    contraindications: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)
    # pending -> requested (exam_id set) | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    exam_id: Mapped[str | None] = mapped_column(ForeignKey("exams.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


async def pending(
    db: AsyncSession, establishment_id: int
) -> list[tuple[OrderDraft, PatientIdentity]]:
    rows = await db.execute(
        select(OrderDraft, PatientIdentity)
        .join(PatientIdentity, PatientIdentity.id == OrderDraft.patient_identity_id)
        .where(OrderDraft.establishment_id == establishment_id, OrderDraft.status == "pending")
        .order_by(OrderDraft.created_at)
    )
    return [(row[0], row[1]) for row in rows]


def draft_json(
    draft: OrderDraft, identity: PatientIdentity, patient: dict[str, Any]
) -> dict[str, Any]:
    """A draft as ``GET /api/exam-drafts`` lists it (docs/api.md "Patients and drafts")."""
    return {
        "id": draft.id,
        "placer_order_number": draft.placer_order_number,
        "patient": patient,
        "modality": draft.modality,
        "body_part": draft.body_part,
        "clinical_question": draft.clinical_question,
        "urgency": draft.urgency,
        "consent": draft.consent,
        "contraindications": draft.contraindications,
        "missing": list(draft.missing),
        "received_at": draft.created_at.isoformat().replace("+00:00", "Z"),
    }
