"""The hospital applications allowed to send us HL7 v2 (docs/hl7.md "Inbound").

A message names its sender in MSH-3 (sending application) and MSH-4 (sending
facility); that pair is the only thing that ties it to an establishment, so each
pair is registered once, for one establishment (``teleimagerie hl7 add-sender``),
with the subject of the client certificate it must present when the listener
runs over TLS. Any other sender gets an application reject.

Each sender has an interface account: an inactive urgentist of its establishment
that can never log in, named as the requester of the orders whose ordering
provider is not one of our users. The messages received are kept with their
acknowledgement (``hl7_messages``), so that a message sent again gets the same
answer and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from rooms.types import Role
from server.accounts.service import AccountError, establishment_by_code
from server.core.context import AppContext
from server.core.models import Base, Establishment, User

#: A password hash no password matches (argon2 refuses it): the account never logs in.
NO_PASSWORD = "!interface"  # noqa: S105 - not a password: a hash nothing matches


class Hl7Sender(Base):
    __tablename__ = "hl7_senders"
    __table_args__ = (UniqueConstraint("application", "facility"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application: Mapped[str] = mapped_column(String(180))
    facility: Mapped[str] = mapped_column(String(180))
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The subject CN of the client certificate this sender presents (TLS only).
    cert_subject: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Hl7Message(Base):
    """One message applied or answered, and the acknowledgement it got."""

    __tablename__ = "hl7_messages"
    __table_args__ = (UniqueConstraint("sender_id", "control_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("hl7_senders.id"))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(16))
    ack_code: Mapped[str] = mapped_column(String(2))
    ack: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]


@dataclass(frozen=True)
class Sender:
    """A recognised sender, as the listener needs it."""

    id: int
    application: str
    facility: str
    establishment_id: int
    establishment_code: str
    account_id: int
    cert_subject: str | None


def _name(value: str, what: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 180 or any(c in value for c in "|^~\\&\r\n"):
        raise AccountError(f"the sending {what} is 1 to 180 characters without HL7 delimiters")
    return value


async def add_sender(
    app: AppContext,
    db: AsyncSession,
    application: str,
    facility: str,
    establishment_code: str,
    cert_subject: str | None = None,
) -> Hl7Sender:
    application, facility = _name(application, "application"), _name(facility, "facility")
    est = await establishment_by_code(db, establishment_code)
    taken = await db.scalar(
        select(Hl7Sender.id).where(
            Hl7Sender.application == application, Hl7Sender.facility == facility
        )
    )
    if taken:
        raise AccountError(f"sender {application}/{facility} is registered already")
    now = app.now()
    account = User(
        username=f"hl7-{est.code.lower()}-{now:%Y%m%d%H%M%S%f}"[:64],
        password_hash=NO_PASSWORD,
        role=Role.URGENTIST.value,
        establishment_id=est.id,
        display_name=f"{application} ({facility})"[:200],
        active=False,
        created_at=now,
    )
    db.add(account)
    await db.flush()
    sender = Hl7Sender(
        application=application,
        facility=facility,
        establishment_id=est.id,
        account_id=account.id,
        cert_subject=(cert_subject or "").strip() or None,
        created_at=now,
    )
    db.add(sender)
    await db.flush()
    return sender


async def list_senders(db: AsyncSession) -> list[tuple[Hl7Sender, str]]:
    rows = await db.execute(
        select(Hl7Sender, Establishment.code)
        .join(Establishment, Establishment.id == Hl7Sender.establishment_id)
        .order_by(Establishment.code, Hl7Sender.application, Hl7Sender.facility)
    )
    return [(row[0], row[1]) for row in rows]


async def recognise(db: AsyncSession, application: str, facility: str) -> Sender | str:
    """The sender of MSH-3/MSH-4, or why it is refused."""
    row = (
        await db.execute(
            select(Hl7Sender, Establishment.code, Establishment.contract_active)
            .join(Establishment, Establishment.id == Hl7Sender.establishment_id)
            .where(Hl7Sender.application == application, Hl7Sender.facility == facility)
        )
    ).first()
    if row is None:
        return "sending application and facility not registered"
    sender, code, active = row
    if not active:
        return "establishment contract inactive"
    return Sender(
        id=sender.id,
        application=sender.application,
        facility=sender.facility,
        establishment_id=sender.establishment_id,
        establishment_code=code,
        account_id=sender.account_id,
        cert_subject=sender.cert_subject,
    )
