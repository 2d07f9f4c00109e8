"""The audit trail: one append-only, hash-chained row per access or change.

Who did what, to which exam or study, when, from where, and with which
outcome. Each row's ``hash`` is the SHA-256 of its canonical serialisation
(which includes its ``id`` and the previous row's hash), so editing a row
breaks its own hash and deleting one breaks the link of the row after it:
``teleimagerie audit verify`` (:func:`verify`) names the first broken row.
Deleting the newest rows cannot be seen from inside the chain: signed checkpoints
of the head, kept outside the database (server/core/audit_anchor.py), catch that.

Appends are serialised so the chain never forks: PostgreSQL takes a
transaction-level advisory lock, SQLite's ``BEGIN IMMEDIATE`` already holds
the single write lock. Record last in a transaction, after its row locks, so
that waiting for the audit lock never waits for a row lock as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import JSON, BigInteger, Integer, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from server.core.batching import Batcher
from server.core.identity import Principal
from server.core.models import Base

log = logging.getLogger("teleimagerie.audit")

GENESIS = "0" * 64
# Any constant works: it only has to be the same for every process.
ADVISORY_LOCK_KEY = 0x7E1E_A0D1


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)  # GET /api/audit?user=
    username: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    exam_id: Mapped[str | None] = mapped_column(String(36), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(64))
    addr: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(slots=True)
class Entry:
    """A row on its way into the chain (:func:`make_entry`): the columns of
    :class:`AuditEntry` in a plain object. A row is written once and never changed,
    so the ORM has nothing to track of it, and its instrumented attributes cost
    more to set and read than the row's hash (an HL7 group writes a few per message)."""

    at: datetime
    user_id: int | None
    username: str | None
    role: str | None
    action: str
    exam_id: str | None
    study_uid: str | None
    addr: str | None
    outcome: str
    detail: dict[str, Any]
    id: int = 0
    prev_hash: str = ""
    hash: str = ""


#: A row to chain: a plain one, or the ORM's (what some callers build).
R = TypeVar("R", Entry, AuditEntry)


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: AuditEntry | Entry) -> bytes:
    """The bytes hashed for a row: sorted-key compact JSON, UTF-8, every column."""
    doc = {
        "id": entry.id,
        "at": _ts(entry.at),
        "user_id": entry.user_id,
        "username": entry.username,
        "role": entry.role,
        "action": entry.action,
        "exam_id": entry.exam_id,
        "study_uid": entry.study_uid,
        "addr": entry.addr,
        "outcome": entry.outcome,
        "detail": entry.detail or {},
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(entry: AuditEntry | Entry) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


async def _append(db: AsyncSession, entries: Sequence[R]) -> Sequence[R]:
    """Chain ``entries`` after the newest row, in order, in the caller's transaction."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    last = (
        await db.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        )
    ).first()
    # Ids are taken here, under the lock, rather than from a sequence: the id is
    # hashed, and the row is written once (the table refuses UPDATE).
    next_id, prev = (last.id + 1, last.hash) if last else (1, GENESIS)
    for entry in entries:
        entry.id = next_id
        entry.prev_hash = prev
        entry.hash = prev = row_hash(entry)
        next_id += 1
    # The rows go in with one executemany, not the session's unit of work: they are
    # written once and never changed, so the session has nothing to track of them.
    # What the session holds pending is written first, as a flush here always did.
    await db.flush()
    await db.execute(_INSERT, [{key: getattr(entry, key) for key in _COLUMNS} for entry in entries])
    return entries


_TABLE = AuditEntry.__table__
assert isinstance(_TABLE, Table)
_COLUMNS = tuple(column.key for column in _TABLE.columns)
#: Built once (its cache key is computed once): the table, not the class, so the ORM's
#: bulk insert does not split the rows by which columns are None.
_INSERT = insert(_TABLE)


class AuditWriter:
    """Rows recorded on their own (reads, joins, refusals) are written in groups:
    one lock and one commit for every row that arrived while the previous group
    was written (server/core/batching.py). Each caller still returns only once its row
    is committed."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self._batcher: Batcher[Entry, Entry] = Batcher(self._write)

    async def append(self, entry: Entry) -> Entry:
        return await self._batcher.submit(entry)

    async def _write(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        async with self.db() as db:
            await _append(db, entries)
            await db.commit()
        return entries


class Audited(Protocol):
    """What :func:`record` needs of the application context (its writer): the
    core's ``AppContext`` is one; naming it here would import it back."""

    @property
    def audit(self) -> AuditWriter: ...

    def now(self) -> datetime: ...


def make_entry(
    *,
    action: str,
    who: Principal | None = None,
    outcome: str = "ok",
    exam_id: str | None = None,
    study_uid: str | None = None,
    addr: str | None = None,
    detail: dict[str, Any] | None = None,
    username: str | None = None,
    at: datetime | None = None,
) -> Entry:
    """A row not yet chained: :func:`record_many` appends several in one go."""
    user = who.user if who else None
    return Entry(
        at=at or datetime.now(UTC),
        user_id=user.id if user else None,
        username=user.username if user else username,
        role=user.role if user else None,
        action=action,
        exam_id=exam_id,
        study_uid=study_uid,
        addr=addr,
        outcome=outcome,
        detail=detail or {},
    )


async def record_many(db: AsyncSession, entries: Sequence[R]) -> Sequence[R]:
    """Append rows of :func:`make_entry`, in order, in the caller's transaction: one
    read of the chain's head and one insert for all of them (a message of the
    hospitals' interfaces audits each of its changes, the outbox a batch of
    deliveries; docs/hl7.md)."""
    if not entries:
        return entries
    return await _append(db, entries)


async def record(
    target: Audited | AsyncSession,
    *,
    action: str,
    who: Principal | None = None,
    outcome: str = "ok",
    exam_id: str | None = None,
    study_uid: str | None = None,
    addr: str | None = None,
    detail: dict[str, Any] | None = None,
    username: str | None = None,
    at: datetime | None = None,
) -> Entry:
    """Append one row.

    Given a session, the row joins the caller's transaction (it commits or
    rolls back with the change it describes); given the AppContext, it is
    written and committed on its own (reads, refusals, failed logins).
    ``action`` is a dotted verb (``login``, ``exam.read``, ``report.sign``,
    ``dicom.read``...); ``outcome`` is ``ok``, ``denied`` or ``failed``.
    """
    entry = make_entry(
        action=action,
        who=who,
        outcome=outcome,
        exam_id=exam_id,
        study_uid=study_uid,
        addr=addr,
        detail=detail,
        username=username,
        at=at,
    )
    if isinstance(target, AsyncSession):
        await _append(target, [entry])
        return entry
    return await target.audit.append(entry)


@dataclass
class Broken:
    row_id: int
    reason: str


async def _rows(db: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    after = 0
    while True:
        rows = (
            await db.scalars(
                select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(batch)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].id
        db.expunge_all()


async def verify(db: AsyncSession) -> tuple[int, str, Broken | None]:
    """Walk the chain in id order: (rows checked, head hash, first break or None)."""
    prev = GENESIS
    count = 0
    async for row in _rows(db):
        if row.prev_hash != prev:
            return (
                count,
                prev,
                Broken(
                    row.id,
                    "its link to the previous row does not match "
                    "(a row before it was deleted or changed)",
                ),
            )
        if row_hash(row) != row.hash:
            return count, prev, Broken(row.id, "its content does not match its hash (edited)")
        prev = row.hash
        count += 1
    return count, prev, None


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": _ts(entry.at),
        "user": {"id": entry.user_id, "username": entry.username, "role": entry.role},
        "action": entry.action,
        "exam_id": entry.exam_id,
        "study_uid": entry.study_uid,
        "addr": entry.addr,
        "outcome": entry.outcome,
        "detail": entry.detail,
        "hash": entry.hash,
    }
