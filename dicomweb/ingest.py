"""The one ingest path: STOW-RS (PS3.18 10.5), the DICOM gateway's C-STORE,
delivered reports.

Storing runs in two steps. ``Ingestor.stage_soon`` (one instance, in worker
threads, many side by side) writes the received bytes unchanged to a temp file
and fsyncs it, then has its header read and its DICOM JSON made there, in a
header reader process (dicomweb/staging.py).
``Ingestor.store_staged`` (a batch) asks ``Access`` whether the caller may
store each instance and where, moves the new files into place, indexes the batch
in SQL in one transaction, then calls ``IngestHooks.on_stored`` per new
instance. What the Access keeps aside goes to the quarantine area instead and is
recorded by its ``keep_aside`` (docs/dicomweb.md "Filing and reconciliation"). STOW stages
each part as soon as it is received and indexes what is staged while the rest of
the body arrives; ``store`` and ``store_many`` do both steps. A failure leaves
nothing behind: no file, no row.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import tables as t
from dicomweb.header import Summary, instance_attrs
from dicomweb.index import Indexed, Prepared, Rejected, index_batch
from dicomweb.reconcile import Reconciled, Recovery, reconcile
from dicomweb.staging import HeaderReaders, Staged, fail
from dicomweb.storage import Buffer, Storage
from dicomweb.types import (
    DATA_SET_MISMATCH,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    Access,
    DicomwebConfig,
    Failure,
    IngestHooks,
    KeepAside,
    KeptAside,
    Principal,
    Quarantined,
    StoredInstance,
)

log = logging.getLogger(__name__)
Result = StoredInstance | KeptAside | Failure
RETRIES = 3
#: What may be staged: Part-10 bytes, the chunks they arrived in, or a file.
Item = bytes | Sequence[Buffer] | Path
#: Staging threads. Writes and fsyncs (the GIL released) overlap in the I/O pool;
#: each reader thread hands a written file to a header reader process and waits
#: for its answer (dicomweb/staging.py), two side by side.
READERS = 2
_WRITE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dicomweb-write")
_READ = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="dicomweb-read")
_HEADERS = HeaderReaders(READERS)


class Decisions:
    """``Access.authorize_store``'s answers kept by one caller across batches:
    a DICOM association sends a series one instance at a time, and every slice
    of it reads the same exam. Keyed by ``Access.store_key`` (the study and
    patient attributes the decision reads), so an instance that differs in any
    of them is decided afresh; an answer older than ``max_age_s`` is asked again,
    so that a change to the exam (cancelled, reassigned) reaches a long
    association within that time (docs/gateway.md "One ingest path").
    """

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._kept: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, the answer) when one is kept and fresh, else (False, None)."""
        kept = self._kept.get(key)
        if kept is None or time.monotonic() - kept[0] > self.max_age_s:
            return False, None
        return True, kept[1]

    def put(self, key: Hashable, answer: Any) -> None:
        if len(self._kept) >= 64:  # one association rarely sends more studies
            self._kept.clear()
        self._kept[key] = (time.monotonic(), answer)


class Ingestor:
    """Store instances; shared by every way images arrive."""

    def __init__(
        self,
        config: DicomwebConfig,
        db: async_sessionmaker[AsyncSession],
        access: Access,
        hooks: IngestHooks | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.access = access
        self.hooks = hooks
        self.storage = storage or Storage(config.storage_root, config.keep_cached)
        self.reconciling: asyncio.Task[Reconciled | None] | None = None

    def warm_up(self) -> Future[None]:
        """Start the header reader processes now, in the background, rather than
        with the first instance (~0.5 s), and reconcile the storage with the
        index (``reconcile_soon``): what a serving process does at start-up.
        A command that only builds the app (the CLI's) does neither."""
        self.reconciling = self.reconcile_soon()
        return _READ.submit(_HEADERS.start)

    def reconcile_soon(self) -> asyncio.Task[Reconciled | None] | None:
        """Reconcile the storage with the index in the background
        (dicomweb/reconcile.py, docs/dicomweb.md "Start-up reconciliation"):
        abandoned temp files deleted, files in place without a row set aside.
        None when called outside an event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        started = time.time()  # files placed from now on may be this process's own
        hook = getattr(self.access, "keep_aside", None)
        keep_aside = None if hook is None else functools.partial(hook, Recovery())

        async def run() -> Reconciled | None:
            try:
                alone = await anyio.to_thread.run_sync(self.storage.alone)
                return await reconcile(
                    self.storage, self.db, alone=alone, started=started, keep_aside=keep_aside
                )
            except Exception:  # the archive still serves; the next start-up tries again
                log.exception("reconciling the storage with the index failed")
                return None

        return loop.create_task(run())

    async def store(
        self,
        data: bytes | Path,
        principal: Principal,
        *,
        expected_study: str | None = None,
        owned: bool = False,
        decisions: Decisions | None = None,
        sop_uid: str | None = None,
    ) -> Result:
        """Store one instance. ``data``: the Part-10 bytes or a file path; with
        ``owned=True`` the file (in the storage's temp dir) is moved, not copied.
        ``expected_study``: the study UID of a ``POST /studies/{study}``.
        ``decisions``: filing answers the caller keeps from one call to the next
        (see ``Decisions``); without it each call asks ``Access`` afresh.
        ``sop_uid``: the SOP Instance UID the caller was told (a C-STORE's
        Affected SOP Instance UID): the index is asked whether it is stored
        already while the instance is being staged, not after; an instance whose
        header names another UID is asked after, as without it."""
        early = None
        if sop_uid:
            early = _Early(frozenset([sop_uid]), asyncio.ensure_future(self._existing([sop_uid])))
        try:
            results = await self.store_many(
                [data],
                principal,
                expected_study=expected_study,
                owned=owned,
                decisions=decisions,
                early=early,
            )
        finally:
            if early is not None:
                await early.settle()
        return results[0]

    async def store_many(
        self,
        items: Sequence[Item],
        principal: Principal,
        *,
        expected_study: str | None = None,
        owned: bool = False,
        decisions: Decisions | None = None,
        early: _Early | None = None,
    ) -> list[Result]:
        """Store a batch; one result per item, in order."""
        staged = await asyncio.gather(*(self.stage_soon(item, owned) for item in items))
        return await self.store_staged(
            staged, principal, expected_study=expected_study, decisions=decisions, early=early
        )

    def stage_soon(self, item: Item, owned: bool = False) -> asyncio.Future[Staged | Failure]:
        """Stage ``item``: ``write`` in the I/O pool, then its header read
        (``staging.read_staged``) by a header reader process. The future is
        never cancelled by the work; should its result be dropped,
        ``discard_staged`` takes the temp file away. Cancelling the future leaves
        nothing behind either."""
        loop = asyncio.get_running_loop()
        staged: asyncio.Future[Staged | Failure] = loop.create_future()

        def deliver(result: Staged | Failure) -> None:  # on the loop
            if staged.cancelled():
                discard_staged([result])
            else:
                staged.set_result(result)

        def read(temp: Path) -> None:  # in the reader thread
            try:
                result = _HEADERS.read(temp)
            except Exception:  # a bug, not this instance's fault: it must still answer
                log.exception("reading a staged header failed")
                Storage.discard(temp)
                result = Failure(PROCESSING_FAILURE, "the instance could not be staged")
            try:
                loop.call_soon_threadsafe(deliver, result)
            except RuntimeError:  # the loop is closed: nobody will take it
                discard_staged([result])

        def written(job: Future[Path | Failure]) -> None:  # in an I/O thread
            try:
                temp = job.result()
            except Exception:  # not an OSError: a bug, not this instance's fault
                log.exception("staging an instance failed")
                temp = Failure(PROCESSING_FAILURE, "the instance could not be staged")
            if isinstance(temp, Path):
                _READ.submit(read, temp)
                return
            try:
                loop.call_soon_threadsafe(deliver, temp)
            except RuntimeError:
                pass

        _WRITE.submit(self.write, item, owned).add_done_callback(written)
        return staged

    def write(self, item: Item, owned: bool = False) -> Path | Failure:
        """``item`` in a temp file, fsynced (a file of ours, ``owned``, is used
        as it is). Blocking; the I/O of staging, nearly all outside the GIL."""
        try:
            if isinstance(item, Path):
                temp = item if owned else self.storage.copy_temp(item)
            else:
                temp = self.storage.write_temp([item] if isinstance(item, bytes) else item)
        except BaseException as exc:
            if isinstance(item, Path) and owned:
                Storage.discard(item)
            if isinstance(exc, OSError):
                return Failure(OUT_OF_RESOURCES, f"cannot write: {exc.strerror}")
            raise
        try:
            Storage.sync(temp)
        except OSError as exc:
            Storage.discard(temp)
            return Failure(OUT_OF_RESOURCES, f"cannot write: {exc.strerror}")
        return temp

    async def store_staged(
        self,
        staged: Sequence[Staged | Failure],
        principal: Principal,
        *,
        expected_study: str | None = None,
        decisions: Decisions | None = None,
        early: _Early | None = None,
    ) -> list[Result]:
        """Place and index staged instances; one result per item, in order. The
        temp files are moved into place or discarded, whatever happens. The work
        runs to its end even if the caller is cancelled (a client gone, a request
        failing midway): a batch is stored with its rows, or not at all."""
        work = asyncio.ensure_future(
            self._store_batch(staged, principal, expected_study, decisions, early)
        )
        return await asyncio.shield(work)

    async def _store_batch(
        self,
        staged: Sequence[Staged | Failure],
        principal: Principal,
        expected_study: str | None,
        decisions: Decisions | None = None,
        early: _Early | None = None,
    ) -> list[Result]:
        try:
            results = await self._store(staged, principal, expected_study, decisions, early)
        finally:
            discard_staged(staged)  # what was not moved into place
        if self.hooks is not None:
            for r in results:
                if isinstance(r, StoredInstance) and not r.duplicate:
                    try:
                        await self.hooks.on_stored(r)
                    except Exception:
                        log.exception("on_stored hook failed for %s", r.sop_uid)
        return results

    async def _store(
        self,
        staged: Sequence[Staged | Failure],
        principal: Principal,
        expected_study: str | None,
        decisions: Decisions | None = None,
        early: _Early | None = None,
    ) -> list[Result]:
        results: list[Result | None] = [None] * len(staged)
        candidates: list[tuple[int, Staged, Any]] = []
        store_key = getattr(self.access, "store_key", None)
        # store_key -> authorize_store's answer: for this batch, or kept by the caller
        decided = decisions if decisions is not None else Decisions()
        aside: list[tuple[int, Staged, Quarantined]] = []
        for i, item in enumerate(staged):
            if isinstance(item, Failure):
                results[i] = item
                continue
            h = item.header
            attrs = instance_attrs(h, expected_study)
            key = store_key(principal, attrs) if store_key is not None else None
            known, target = decided.get(key) if key is not None else (False, None)
            if not known:
                target = await self.access.authorize_store(principal, attrs)
                if key is not None:
                    decided.put(key, target)
            if target is None:
                results[i] = fail(h, NOT_AUTHORIZED, "not authorised to store this instance")
                continue
            if isinstance(target, KeepAside):
                aside.append((i, item, Quarantined(attrs, target, "", item.size)))
                continue
            if expected_study is not None and h.study_uid != expected_study:
                message = f"StudyInstanceUID is not {expected_study}"
                results[i] = fail(h, DATA_SET_MISMATCH, message)
                continue
            candidates.append((i, item, target))
        if aside:
            await self._keep_aside(principal, aside, results)
        sops = [s.header.sop_uid for _, s, _ in candidates]
        if early is not None and sops and early.sops.issuperset(sops):
            existing = await early.rows  # asked while the instance was staged
        else:
            existing = await self._existing(sops)
        fresh: list[tuple[int, Staged, Any]] = []
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []  # the same instance twice in one batch
        for i, s, target in candidates:
            h = s.header
            if h.sop_uid in existing:
                results[i] = self._duplicate(h, existing[h.sop_uid])
            elif h.sop_uid in first_of:
                repeats.append((i, first_of[h.sop_uid]))
            else:
                first_of[h.sop_uid] = i
                fresh.append((i, s, target))
        if fresh:
            await self._place_and_index(fresh, results)
        for i, first in repeats:
            done = results[first]
            results[i] = _same(done) if isinstance(done, StoredInstance) else done
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]  # no None left: asserted above

    async def _keep_aside(
        self,
        principal: Principal,
        aside: list[tuple[int, Staged, Quarantined]],
        results: list[Result | None],
    ) -> None:
        """Move instances kept aside into the quarantine area, then have the
        Access record them; what cannot be recorded is removed and fails (A700)."""
        keep = getattr(self.access, "keep_aside", None)
        moves = [(s.temp, self.storage.quarantine_path()) for _, s, _ in aside]
        placed = await anyio.to_thread.run_sync(self.storage.place_many, moves)
        ready: list[tuple[int, Staged, Quarantined]] = []
        for (i, s, q), (_, rel), final in zip(aside, moves, placed, strict=True):
            if isinstance(final, OSError):
                results[i] = fail(s.header, OUT_OF_RESOURCES, f"cannot write: {final.strerror}")
            else:
                ready.append((i, s, replace(q, path=rel)))
        if not ready:
            return
        try:
            if keep is None:
                raise RuntimeError("this archive keeps nothing aside")
            ids = await keep(principal, [q for _, _, q in ready])
        except Exception:
            log.exception("recording %d instance(s) kept aside failed", len(ready))
            for i, s, q in ready:
                Storage.discard(self.storage.absolute(q.path))
                results[i] = fail(s.header, OUT_OF_RESOURCES, "could not be kept aside; retry")
            return
        for (i, s, q), item_id in zip(ready, ids, strict=True):
            h = s.header
            results[i] = KeptAside(
                study_uid=h.study_uid,
                series_uid=h.series_uid,
                sop_uid=h.sop_uid,
                sop_class_uid=h.sop_class_uid,
                reason=q.decision.reason,
                message=q.decision.message,
                item_id=item_id,
            )

    async def _place_and_index(
        self, fresh: list[tuple[int, Staged, Any]], results: list[Result | None]
    ) -> None:
        paths = [
            self.storage.relative_path(s.header.study_uid, s.header.series_uid, s.header.sop_uid)
            for _, s, _ in fresh
        ]
        placed = await anyio.to_thread.run_sync(
            self.storage.place_many,
            [(s.temp, rel) for (_, s, _), rel in zip(fresh, paths, strict=True)],
        )
        ready: list[Prepared] = []
        for (i, s, target), rel, final in zip(fresh, paths, placed, strict=True):
            if isinstance(final, OSError):
                results[i] = fail(s.header, OUT_OF_RESOURCES, f"cannot write: {final.strerror}")
                continue
            ready.append(Prepared(i, s.header, target, rel, s.size, *s.metadata))
        outcome: list[Indexed | Rejected] = []
        for attempt in range(RETRIES):
            try:
                async with self.db() as session, session.begin():
                    outcome = await index_batch(
                        session, ready, getattr(self.access, "study_identity", None)
                    )
                break
            except IntegrityError:
                # A concurrent request created the same study or series row, or
                # stored one of these instances: those count as stored, the rest
                # is indexed again against the rows that now exist.
                existing = await self._existing([p.header.sop_uid for p in ready])
                for p in ready:
                    if p.header.sop_uid in existing:  # same path: the file is theirs too
                        results[p.index] = self._duplicate(p.header, existing[p.header.sop_uid])
                ready = [p for p in ready if p.header.sop_uid not in existing]
                if ready and attempt < RETRIES - 1:
                    continue
                for p in ready:
                    results[p.index] = await self._after_failure(p)
                return
            except SQLAlchemyError:
                # No file stays without its row.
                log.warning("indexing a batch of %d failed", len(ready), exc_info=True)
                for p in ready:
                    results[p.index] = await self._after_failure(p)
                return
        by_index = {p.index: p for p in ready}
        for o in outcome:
            p = by_index[o.index]
            if isinstance(o, Indexed):
                results[o.index] = self._stored(
                    p.header, o.exam_id, o.establishment_id, o.series_count
                )
            else:
                Storage.discard(self.storage.absolute(p.path))
                results[o.index] = fail(p.header, o.reason, o.message)

    async def _after_failure(self, p: Prepared) -> Result:
        existing = await self._existing([p.header.sop_uid])
        if p.header.sop_uid in existing:  # same UIDs, same path: that file is theirs now
            return self._duplicate(p.header, existing[p.header.sop_uid])
        Storage.discard(self.storage.absolute(p.path))
        return fail(p.header, OUT_OF_RESOURCES, "the index could not be updated; retry")

    async def _existing(self, sops: list[str]) -> dict[str, Any]:
        if not sops:
            return {}
        query = (
            select(
                t.instances.c.sop_uid,
                t.studies.c.study_uid,
                t.series.c.series_uid,
                t.series.c.modality,
                t.series.c.num_instances,
                t.studies.c.exam_id,
                t.studies.c.establishment_id,
            )
            .select_from(t.instances_with_parents())
            .where(t.instances.c.sop_uid.in_(sops))
        )
        async with self.db() as session:
            return {r.sop_uid: r for r in await session.execute(query)}

    def _duplicate(self, h: Summary, row: Any) -> Result:
        """Same SOP Instance UID again: idempotent success, file left unchanged."""
        if (row.study_uid, row.series_uid) != (h.study_uid, h.series_uid):
            return fail(h, DATA_SET_MISMATCH, "SOP Instance UID already stored in another series")
        return _same(self._stored(h, row.exam_id, row.establishment_id, row.num_instances))

    def _stored(self, h: Summary, exam: str | None, est: int | None, count: int) -> StoredInstance:
        prefix = f"{self.config.base_url()}/studies/{h.study_uid}/series/{h.series_uid}"
        return StoredInstance(
            study_uid=h.study_uid,
            series_uid=h.series_uid,
            sop_uid=h.sop_uid,
            sop_class_uid=h.sop_class_uid,
            modality=h.text("Modality")[:16],
            exam_id=exam,
            establishment_id=est,
            series_instance_count=count,
            thumbnail_url=f"{prefix}/thumbnail",
            retrieve_url=f"{prefix}/instances/{h.sop_uid}",
        )


@dataclass
class _Early:
    """The index asked about ``sops`` while they are staged (``Ingestor.store``)."""

    sops: frozenset[str]
    rows: asyncio.Future[dict[str, Any]]

    async def settle(self) -> None:
        """Wait for the lookup to end, its answer used or not (the instance
        failed to stage, the caller left): no query outlives its call, and an
        unused lookup's failure is not an error. Not cancelled: a batch whose
        caller left is still stored and may await it."""
        await asyncio.wait([self.rows])
        if not self.rows.cancelled():
            self.rows.exception()  # retrieved


def discard_staged(staged: Sequence[Staged | Failure]) -> None:
    """Remove the temp files of staged instances (gone already once placed)."""
    for s in staged:
        if isinstance(s, Staged):
            Storage.discard(s.temp)


def _same(s: StoredInstance) -> StoredInstance:
    return replace(s, duplicate=True)
