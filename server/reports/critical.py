"""The critical-result record (docs/stroke.md "The critical-result record"): the finding,
when it was identified, who communicated it, to whom, when it was received and how.

A signature with the critical flag opens the record (the finding is the conclusion,
identified at the signature, communicated by the signer). It is complete once the
urgentist acknowledges the report in the room (``room``) or the radiologist logs the
phone call with its read-back (``phone``); the critical escalation runs until then.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CLOCK_SKEW = timedelta(minutes=2)


class CriticalResult(Base):
    __tablename__ = "critical_results"

    exam_id: Mapped[str] = mapped_column(
        ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True
    )
    finding: Mapped[str] = mapped_column(Text)
    identified_at: Mapped[datetime]
    communicated_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recipient_name: Mapped[str | None] = mapped_column(String(200))
    recipient_role: Mapped[str | None] = mapped_column(String(200))
    recipient_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime | None]
    method: Mapped[str | None] = mapped_column(String(8))  # "room" or "phone"
    read_back: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class PhoneCall(BaseModel):
    """``POST /api/exams/{id}/critical-result/call``: the call the radiologist made."""

    model_config = ConfigDict(extra="forbid")

    recipient_name: Name
    recipient_role: Name | None = None
    received_at: AwareDatetime
    read_back: bool


def record_json(row: CriticalResult | None) -> dict[str, Any] | None:
    if row is None:
        return None

    def ts(value: datetime | None) -> str | None:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {
        "finding": row.finding,
        "identified_at": ts(row.identified_at),
        "communicated_by": row.communicated_by_id,
        "recipient": {
            "name": row.recipient_name,
            "role": row.recipient_role,
            "user_id": row.recipient_user_id,
        },
        "received_at": ts(row.received_at),
        "method": row.method,
        "read_back": row.read_back,
        "complete": row.received_at is not None,
    }
