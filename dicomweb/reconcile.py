"""Start-up reconciliation of the archive's files with its index.

A process killed while storing (docs/dicomweb.md "Start-up reconciliation") can
leave temp files (``tmp/*.part``: a part being received, an instance staged) and
files moved into place whose index rows were never committed. Both hold patient
data and nothing else would ever remove them. A process that owns the archive
(``serve``, ``dicom``) calls ``reconcile`` once at start-up, in the background:

- a temp file is deleted when the process that wrote it (its name says which,
  ``storage.temp_writer``) is gone from this host, or when it is older than
  ``STALE_S`` whoever wrote it; a temp file a live process is writing is kept;
- a file in place without an index row is deleted when it is not a whole DICOM
  instance (truncated, unreadable); a whole one is never indexed: who stored it,
  and so which exam it may be filed into, died with the request (the
  authorisation is not recorded), and filing by the file's identifiers alone is
  what the archive refuses to do. It is moved to the quarantine area and handed
  to the Access's ``keep_aside`` with the reason ``interrupted_store``, so that
  it joins the reconciliation queue where a person files or discards it; where
  there is no such hook, or it fails, a JSON note beside the file says what it is;
- an index row whose file is missing is reported, not removed (the row is the
  record that the instance was received).

Every process with a ``Storage`` of the root holds a shared lock on it
(``Storage.alone``). A process that finds itself alone treats every file placed
before it started as abandoned; otherwise a file in place is only touched once
it is ``GRACE_S`` old, since another process may be between moving it into place
and committing its row. Everything done is
logged with counts and storage paths (digests of UIDs), never patient data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import tables as t
from dicomweb.header import HeaderError, instance_attrs, read_path
from dicomweb.storage import Storage, host_name, temp_writer
from dicomweb.types import KeepAside, Quarantined

log = logging.getLogger(__name__)

#: A file in place and not indexed this long is abandoned even while other archive
#: processes run: the move and the commit of one batch are milliseconds apart.
GRACE_S = 300.0
#: A temp file this old is abandoned whoever wrote it (a 2 GiB upload over a slow
#: link takes well under this).
STALE_S = 6 * 3600.0
#: The reason an instance found in place without its row joins the queue with.
INTERRUPTED = "interrupted_store"

#: Records instances moved to the quarantine area (``Access.keep_aside`` bound to
#: the archive's own principal, ``Recovery``); returns their queue item ids.
KeepAsideHook = Callable[[list[Quarantined]], Awaitable[list[str]]]


@dataclass(frozen=True)
class Recovery:
    """Who keeps aside what the start-up reconciliation finds: the archive
    itself, for no establishment (the queue shows such items to coordinators)."""

    source: str = "recovery"
    establishment_id: None = None
    role: str = "system"


@dataclass
class Reconciled:
    """What ``reconcile`` did; paths are relative to the storage root."""

    temps_deleted: list[str] = field(default_factory=list)
    temps_kept: list[str] = field(default_factory=list)  # being written by a live process
    quarantined: list[str] = field(default_factory=list)  # whole, not indexed: set aside
    deleted: list[str] = field(default_factory=list)  # in place, not a whole instance
    left: list[str] = field(default_factory=list)  # too recent to decide: next start-up
    missing: list[str] = field(default_factory=list)  # index rows without their file
    files: int = 0  # files found in place

    def changed(self) -> bool:
        return bool(self.temps_deleted or self.quarantined or self.deleted or self.missing)

    def summary(self) -> dict[str, object]:
        return {
            "event": "dicomweb.reconciled",
            "files": self.files,
            **{
                name: {"count": len(paths), "paths": paths[:100]}
                for name, paths in (
                    ("temps_deleted", self.temps_deleted),
                    ("temps_kept", self.temps_kept),
                    ("quarantined", self.quarantined),
                    ("deleted", self.deleted),
                    ("left", self.left),
                    ("missing", self.missing),
                )
            },
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_temps(
    storage: Storage, now: float, started: float, stale_s: float, done: Reconciled
) -> None:
    """Delete abandoned temp files (``tmp/*.part``, thumbnails being written).
    ``started``: when this process began to use the storage. Blocking."""
    me, host = os.getpid(), host_name()
    for entry in _entries(storage.tmp):
        mtime = _mtime(entry) if entry.name.endswith(".part") else None
        if mtime is None or not entry.is_file(follow_symlinks=False):
            continue
        age = now - mtime
        writer = temp_writer(entry.name)
        if writer is not None and writer[1] == host and writer[0] != me:
            abandoned = not _alive(writer[0]) or age > stale_s
        elif writer is not None and writer[1] == host:
            # This pid, written before this process began: a previous process that
            # had the same pid (a container's server often has the same one).
            abandoned = mtime < started or age > stale_s
        else:  # another host's, or an older name without its writer
            abandoned = age > stale_s
        rel = f"tmp/{entry.name}"
        if abandoned:
            Storage.discard(Path(entry.path))
            done.temps_deleted.append(rel)
        else:
            done.temps_kept.append(rel)
    # A thumbnail is written and renamed within a second (dicomweb/render.py).
    for entry in _entries(storage.thumbs):
        mtime = _mtime(entry) if entry.name.endswith(".tmp") else None
        if mtime is not None and now - mtime > GRACE_S:
            Storage.discard(Path(entry.path))
            done.temps_deleted.append(f"thumbnails/{entry.name}")


def _mtime(entry: os.DirEntry[str]) -> float | None:
    """The entry's mtime; None when it went meanwhile (renamed into place, removed)."""
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _bucket(storage: Storage, name: str) -> list[tuple[str, float]]:
    """The files in place under one top-level directory, sorted by relative path
    (every level has names of one length, so this is the paths' byte order),
    with their ctime (set by the move into place). Blocking."""
    found = []
    for study in _entries(storage.root / name):
        for series in _entries(Path(study.path)) if study.is_dir() else []:
            for item in _entries(Path(series.path)) if series.is_dir() else []:
                rel = f"{name}/{study.name}/{series.name}/{item.name}"
                try:
                    ctime = item.stat(follow_symlinks=False).st_ctime
                except FileNotFoundError:  # discarded meanwhile (a rejected instance)
                    continue
                if storage.is_stored_path(rel):
                    found.append((rel, ctime))
    return found


def _buckets(storage: Storage) -> Iterator[str]:
    hexdigits = set("0123456789abcdef")
    for entry in _entries(storage.root):
        if len(entry.name) == 2 and set(entry.name) <= hexdigits and entry.is_dir():
            yield entry.name


async def _indexed_paths(session: AsyncSession) -> AsyncIterator[str]:
    """Every indexed path in byte order ("C" collation on PostgreSQL, whose
    default collation may ignore the slashes)."""
    column: ColumnElement[str] = t.instances.c.path
    if session.get_bind().dialect.name == "postgresql":
        column = column.collate("C")
    result = await session.stream(select(t.instances.c.path).order_by(column))
    async for path in result.scalars():
        yield path


async def unindexed(
    storage: Storage, db: async_sessionmaker[AsyncSession], done: Reconciled
) -> list[tuple[str, float]]:
    """The files in place without an index row, with their ctime; the rows
    without a file go to ``done.missing``. One ordered pass over both."""
    orphans: list[tuple[str, float]] = []
    async with db() as session:
        rows = _indexed_paths(session)
        row: str | None = await anext(rows, None)
        for name in await anyio.to_thread.run_sync(lambda: list(_buckets(storage))):
            files = await anyio.to_thread.run_sync(_bucket, storage, name)
            done.files += len(files)
            for rel, ctime in files:
                while row is not None and row < rel:
                    done.missing.append(row)
                    row = await anext(rows, None)
                if row == rel:
                    row = await anext(rows, None)
                else:
                    orphans.append((rel, ctime))
        while row is not None:
            done.missing.append(row)
            row = await anext(rows, None)
    return orphans


def set_aside(storage: Storage, rel: str, now: float) -> Quarantined | None:
    """Check one file in place without a row: deleted (None) when it is not a
    whole instance, else moved to the quarantine area and described for the
    queue. Blocking."""
    path = storage.absolute(rel)
    try:
        header = read_path(path)
    except HeaderError as exc:
        log.warning("%s is not a whole DICOM instance (%s): deleted", rel, exc.message)
        Storage.discard(path)
        return None
    expected = storage.relative_path(header.study_uid, header.series_uid, header.sop_uid)
    message = (
        "stored when the archive stopped, before it was filed: check which exam it belongs to"
        if expected == rel
        else "found in the archive under a path its UIDs do not give: check it"
    )
    target = storage.quarantine_path()
    size = path.stat().st_size
    os.replace(path, storage.absolute(target))
    return Quarantined(
        attrs=instance_attrs(header),
        decision=KeepAside(INTERRUPTED, message),
        path=target,
        size=size,
    )


def write_note(storage: Storage, q: Quarantined, was: str, now: float) -> None:
    """Where no queue records an instance set aside, a JSON note beside it says
    what it is (identifiers, never patient data). Blocking."""
    note = {
        "reason": q.decision.reason,
        "message": q.decision.message,
        "was": was,
        "found_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "size": q.size,
        "study_uid": q.attrs.study_uid,
        "series_uid": q.attrs.series_uid,
        "sop_uid": q.attrs.sop_uid,
        "sop_class_uid": q.attrs.sop_class_uid,
    }
    note_path = storage.absolute(q.path).with_suffix(".json")
    note_path.write_text(json.dumps(note, indent=1), encoding="utf-8")


async def _queue(
    storage: Storage,
    keep_aside: KeepAsideHook | None,
    kept: list[tuple[str, Quarantined]],
    now: float,
) -> None:
    """Hand what was set aside to the queue; a note beside each file otherwise."""
    if not kept:
        return
    if keep_aside is not None:
        try:
            await keep_aside([q for _, q in kept])
            return
        except Exception:
            log.exception("the queue did not take %d instance(s) set aside", len(kept))
    for was, q in kept:
        await anyio.to_thread.run_sync(write_note, storage, q, was, now)


async def reconcile(
    storage: Storage,
    db: async_sessionmaker[AsyncSession],
    *,
    alone: bool,
    started: float,
    grace_s: float = GRACE_S,
    stale_s: float = STALE_S,
    keep_aside: KeepAsideHook | None = None,
) -> Reconciled:
    """Reconcile ``storage`` with the index (module docstring). ``alone``: no
    other process uses the storage; ``started``: when this process announced
    itself (files placed since may be its own, being indexed); ``keep_aside``:
    the queue that takes whole instances found without their row."""
    done = Reconciled()
    now = time.time()
    await anyio.to_thread.run_sync(sweep_temps, storage, now, started, stale_s, done)
    limit = started if alone else min(started, now - grace_s)
    kept: list[tuple[str, Quarantined]] = []
    for rel, ctime in await unindexed(storage, db, done):
        if ctime >= limit:
            done.left.append(rel)
            continue
        # Indexed since the pass began (a live process committed it): leave it.
        async with db() as session:
            row = await session.scalar(
                select(t.instances.c.id).where(t.instances.c.path == rel).limit(1)
            )
        if row is not None:
            continue
        try:
            q = await anyio.to_thread.run_sync(set_aside, storage, rel, now)
        except OSError as exc:
            log.error("cannot reconcile %s: %s", rel, exc.strerror)
            done.left.append(rel)
            continue
        if q is None:
            done.deleted.append(rel)
        else:
            done.quarantined.append(rel)
            kept.append((rel, q))
    await _queue(storage, keep_aside, kept, now)
    summary = json.dumps(done.summary(), separators=(",", ":"))
    if done.changed():
        log.warning(summary)
    else:
        log.info(summary)
    return done
