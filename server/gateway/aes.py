"""Modality AE titles: the only thing that ties a DICOM association to a site.

A scanner identifies itself by its calling AE title and its address, nothing
else (docs/gateway.md "Association acceptance"). Each title is registered once,
for one establishment, with an optional host restriction; the gateway refuses any
other caller.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.accounts.service import AccountError, establishment_by_code, valid_ae_title
from server.core.context import AppContext
from server.core.models import Base, Establishment


class ModalityAE(Base):
    __tablename__ = "modality_aes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    # None: any address; else an IP, a CIDR network or a host name.
    host: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class Caller:
    """A recognised calling AE, as the association handlers need it."""

    ae_title: str
    establishment_id: int
    establishment_code: str


def host_matches(rule: str | None, addr: str) -> bool:
    """Is ``addr`` (the peer's IP) allowed by ``rule`` (IP, CIDR or host name)?"""
    if not rule:
        return True
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(rule, strict=False)
    except ValueError:
        pass
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(rule, None)}
    except OSError:
        return False
    return addr in resolved


async def add_ae(
    app: AppContext,
    db: AsyncSession,
    ae_title: str,
    establishment_code: str,
    host: str | None = None,
    description: str | None = None,
) -> ModalityAE:
    title = valid_ae_title(ae_title)
    est = await establishment_by_code(db, establishment_code)
    if await db.scalar(select(ModalityAE.id).where(ModalityAE.ae_title == title)):
        raise AccountError(f"AE title {title} is registered already")
    if host:
        host = host.strip()
    entry = ModalityAE(
        ae_title=title,
        establishment_id=est.id,
        host=host or None,
        description=(description or "").strip()[:200] or None,
        created_at=app.now(),
    )
    db.add(entry)
    await db.flush()
    return entry


async def list_aes(db: AsyncSession) -> list[tuple[ModalityAE, str]]:
    rows = await db.execute(
        select(ModalityAE, Establishment.code)
        .join(Establishment, Establishment.id == ModalityAE.establishment_id)
        .order_by(Establishment.code, ModalityAE.ae_title)
    )
    return [(row[0], row[1]) for row in rows]


async def recognise(app: AppContext, ae_title: str, addr: str) -> Caller | str:
    """The caller for an association request, or why it is refused."""
    title = ae_title.strip()
    async with app.read() as db:
        row = (
            await db.execute(
                select(ModalityAE, Establishment.code, Establishment.contract_active)
                .join(Establishment, Establishment.id == ModalityAE.establishment_id)
                .where(ModalityAE.ae_title == title)
            )
        ).first()
    if row is None:
        return "calling AE title not recognised"
    ae, code, active = row
    if not active:
        return "establishment contract inactive"
    # A host name is resolved now (DNS may block): off the loop.
    if ae.host and not await asyncio.to_thread(host_matches, ae.host, addr):
        return "calling AE title not allowed from this address"
    return Caller(ae_title=title, establishment_id=ae.establishment_id, establishment_code=code)
