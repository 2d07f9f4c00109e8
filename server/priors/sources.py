"""Each establishment's PACS, as ``teleimagerie pacs set/list/remove`` manage it
(docs/priors.md "Configuration", docs/api.md "CLI")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts.service import AccountError, establishment_by_code, valid_ae_title
from server.core.context import AppContext
from server.core.models import Establishment
from server.priors.models import PacsSource
from server.priors.remote import GET, MOVE, WADO


async def set_source(
    app: AppContext,
    db: AsyncSession,
    establishment: str,
    *,
    ae: str | None = None,
    host: str | None = None,
    port: int | None = None,
    calling_ae: str | None = None,
    retrieve: str = GET,
    dicomweb: Dicomweb | None = None,
    years: int = 5,
    max_studies: int = 3,
    timeout_s: int = 30,
) -> PacsSource:
    """Create or replace the establishment's PACS, in the caller's transaction: a
    DIMSE PACS (``ae``, ``host``, ``port``, retrieved by C-GET or C-MOVE) or a
    DICOMweb one (``dicomweb``)."""
    est = await establishment_by_code(db, establishment)
    if not 1 <= years <= 50:
        raise AccountError("--years is 1 to 50")
    if not 1 <= max_studies <= 20:
        raise AccountError("--max-studies is 1 to 20")
    if not 1 <= timeout_s <= 600:
        raise AccountError("--timeout is 1 to 600 seconds")
    if dicomweb is not None:
        if ae is not None or host is not None or port is not None or retrieve != GET:
            raise AccountError(
                "a DICOMweb PACS has no AE title, host, port nor --retrieve: give --dicomweb alone"
            )
        dicomweb.check()
    else:
        if ae is None or host is None or port is None or calling_ae is None:
            raise AccountError("a DICOM PACS needs --ae-title, --host and --port (or --dicomweb)")
        host = host.strip()
        if not host or len(host) > 255:
            raise AccountError("the PACS host is 1 to 255 characters")
        if not 1 <= port <= 65535:
            raise AccountError("the PACS port is 1 to 65535")
        if retrieve not in (GET, MOVE):
            raise AccountError("--retrieve is get or move")
    now = app.now()
    row = await db.scalar(select(PacsSource).where(PacsSource.establishment_id == est.id))
    if row is None:
        row = PacsSource(establishment_id=est.id, created_at=now)
        db.add(row)
    if dicomweb is not None:
        row.ae_title = row.calling_ae_title = row.host = row.port = None
        row.retrieve = WADO
        row.dicomweb_url = dicomweb.url
        row.dicomweb_auth = dicomweb.auth
        row.dicomweb_user = dicomweb.user
        row.dicomweb_secret = dicomweb.secret
        row.dicomweb_ca = dicomweb.ca_file
    else:
        assert ae is not None and calling_ae is not None
        row.ae_title = valid_ae_title(ae, "the PACS AE title")
        row.calling_ae_title = valid_ae_title(calling_ae, "our calling AE title")
        row.host = host
        row.port = port
        row.retrieve = retrieve
        row.dicomweb_url = row.dicomweb_user = row.dicomweb_secret = row.dicomweb_ca = None
        row.dicomweb_auth = "none"
    row.years = years
    row.max_studies = max_studies
    row.timeout_s = timeout_s
    row.updated_at = now
    await db.flush()
    return row


@dataclass(frozen=True)
class Dicomweb:
    """A DICOMweb PACS as ``pacs set --dicomweb`` gives it: its root (http or https),
    how we authenticate (none, basic with a user, bearer), the secret (password or
    token), the CA file its certificate is checked against."""

    url: str
    auth: str = "none"
    user: str | None = None
    secret: str | None = None
    ca_file: str | None = None

    def check(self) -> None:
        url = self.url.strip()
        if len(url) > 500 or not url.startswith(("http://", "https://")) or " " in url:
            raise AccountError("--dicomweb is an http:// or https:// URL of at most 500 characters")
        if "@" in url.split("/")[2]:
            raise AccountError("--dicomweb takes no credentials in the URL: use --auth")
        if self.auth not in ("none", "basic", "bearer"):
            raise AccountError("--auth is none, basic or bearer")
        if self.auth == "basic" and not self.user:
            raise AccountError("--auth basic needs --user")
        if self.auth != "none" and not self.secret:
            raise AccountError(f"--auth {self.auth} needs a secret on standard input")
        if self.secret is not None and len(self.secret) > 2000:
            raise AccountError("the secret is at most 2000 characters")
        if self.ca_file is not None:
            if not url.startswith("https://"):
                raise AccountError("--ca-file is for an https:// URL")
            if not Path(self.ca_file).is_file():
                raise AccountError(f"--ca-file {self.ca_file} is not a readable file")


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
