"""Each establishment's PACS, as ``teleimagerie pacs set/list/remove`` manage it
(docs/priors.md "Configuration", docs/api.md "CLI")."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts.service import AccountError, establishment_by_code, valid_ae_title
from server.core.context import AppContext
from server.core.models import Establishment
from server.priors.models import PacsSource


async def set_source(
    app: AppContext,
    db: AsyncSession,
    establishment: str,
    *,
    ae: str,
    host: str,
    port: int,
    calling_ae: str,
    years: int = 5,
    max_studies: int = 3,
    timeout_s: int = 30,
) -> PacsSource:
    """Create or replace the establishment's PACS, in the caller's transaction."""
    est = await establishment_by_code(db, establishment)
    host = host.strip()
    if not host or len(host) > 255:
        raise AccountError("the PACS host is 1 to 255 characters")
    if not 1 <= port <= 65535:
        raise AccountError("the PACS port is 1 to 65535")
    if not 1 <= years <= 50:
        raise AccountError("--years is 1 to 50")
    if not 1 <= max_studies <= 20:
        raise AccountError("--max-studies is 1 to 20")
    if not 1 <= timeout_s <= 600:
        raise AccountError("--timeout is 1 to 600 seconds")
    now = app.now()
    row = await db.scalar(select(PacsSource).where(PacsSource.establishment_id == est.id))
    if row is None:
        row = PacsSource(establishment_id=est.id, created_at=now)
        db.add(row)
    row.ae_title = valid_ae_title(ae, "the PACS AE title")
    row.calling_ae_title = valid_ae_title(calling_ae, "our calling AE title")
    row.host = host
    row.port = port
    row.years = years
    row.max_studies = max_studies
    row.timeout_s = timeout_s
    row.updated_at = now
    await db.flush()
    return row


async def list_sources(db: AsyncSession) -> list[tuple[PacsSource, str]]:
    rows = await db.execute(
        select(PacsSource, Establishment.code)
        .join(Establishment, Establishment.id == PacsSource.establishment_id)
        .order_by(Establishment.code)
    )
    return [(row[0], row[1]) for row in rows]


async def remove_source(db: AsyncSession, establishment: str) -> bool:
    est = await establishment_by_code(db, establishment)
    result = await db.execute(delete(PacsSource).where(PacsSource.establishment_id == est.id))
    return bool(getattr(result, "rowcount", 0))
