"""The one ingest path: STOW-RS (PS3.18 10.5) today, a C-STORE listener later.

``Ingestor.store`` (one instance) and ``Ingestor.store_many`` (a batch, e.g. the
parts of a STOW request received so far) validate Part-10 instances, ask
``Access`` whether the caller may store each, write the received bytes unchanged
and atomically, index the batch in SQL in one transaction, then call
``IngestHooks.on_stored`` per new instance. A failure leaves nothing behind: no
file, no row.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import tables as t
from dicomweb.header import (
    BASE,
    SERIES_KEYS,
    STUDY_KEYS,
    Header,
    HeaderError,
    instance_members,
    members_json,
    read_bytes,
    read_path,
)
from dicomweb.index import Indexed, Prepared, Rejected, index_batch
from dicomweb.storage import Storage
from dicomweb.types import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    Access,
    DicomwebConfig,
    Failure,
    IngestHooks,
    InstanceAttrs,
    Principal,
    StoredInstance,
)

log = logging.getLogger(__name__)
Result = StoredInstance | Failure
RETRIES = 3


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
        self.storage = storage or Storage(config.storage_root)

    async def store(
        self,
        data: bytes | Path,
        principal: Principal,
        *,
        expected_study: str | None = None,
        owned: bool = False,
    ) -> Result:
        """Store one instance. ``data``: the Part-10 bytes or a file path; with
        ``owned=True`` the file (in the storage's temp dir) is moved, not copied.
        ``expected_study``: the study UID of a ``POST /studies/{study}``."""
        results = await self.store_many(
            [data], principal, expected_study=expected_study, owned=owned
        )
        return results[0]

    async def store_many(
        self,
        items: Sequence[bytes | Path],
        principal: Principal,
        *,
        expected_study: str | None = None,
        owned: bool = False,
    ) -> list[Result]:
        """Store a batch; one result per item, in order."""
        temps = await anyio.to_thread.run_sync(self._to_temps, items, owned)
        try:
            results = await self._store(temps, principal, expected_study)
        finally:
            for temp in temps:  # moved into place, or to be dropped
                if isinstance(temp, Path):
                    Storage.discard(temp)
        if self.hooks is not None:
            for r in results:
                if isinstance(r, StoredInstance) and not r.duplicate:
                    try:
                        await self.hooks.on_stored(r)
                    except Exception:
                        log.exception("on_stored hook failed for %s", r.sop_uid)
        return results

    def _to_temps(self, items: Sequence[bytes | Path], owned: bool) -> list[Path | bytes]:
        """Files not ours are copied into the temp dir; bytes stay in memory until
        ``Storage.commit_many`` writes them."""
        temps: list[Path | bytes] = []
        for data in items:
            if not isinstance(data, Path) or owned:
                temps.append(data)
                continue
            fd, temp = self.storage.new_temp()
            with os.fdopen(fd, "wb") as out, data.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            temps.append(temp)
        return temps

    @staticmethod
    def _parse(temps: list[Path | bytes]) -> list[tuple[Header, int] | Failure]:
        """Headers of the items: from memory, or from the temp file (mmap)."""
        out: list[tuple[Header, int] | Failure] = []
        for data in temps:
            try:
                if isinstance(data, Path):
                    out.append((read_path(data), data.stat().st_size))
                else:
                    out.append((read_bytes(data), len(data)))
            except HeaderError as exc:
                out.append(Failure(exc.reason, exc.message))
        return out

    async def _store(
        self,
        temps: list[Path | bytes],
        principal: Principal,
        expected_study: str | None,
    ) -> list[Result]:
        results: list[Result | None] = [None] * len(temps)
        parsed = await anyio.to_thread.run_sync(self._parse, temps)
        candidates: list[tuple[int, Header, int, Any]] = []
        for i, item in enumerate(parsed):
            if isinstance(item, Failure):
                results[i] = item
                continue
            h, size = item
            if expected_study is not None and h.study_uid != expected_study:
                message = f"StudyInstanceUID is not {expected_study}"
                results[i] = _fail(h, DATA_SET_MISMATCH, message)
                continue
            target = await self.access.authorize_store(principal, _attrs(h))
            if target is None:
                results[i] = _fail(h, NOT_AUTHORIZED, "not authorised to store this instance")
                continue
            candidates.append((i, h, size, target))
        existing = await self._existing([h.sop_uid for _, h, _, _ in candidates])
        fresh: list[tuple[int, Header, int, Any]] = []
        first_of: dict[str, int] = {}
        repeats: list[tuple[int, int]] = []  # the same instance twice in one batch
        for i, h, size, target in candidates:
            if h.sop_uid in existing:
                results[i] = self._duplicate(h, existing[h.sop_uid])
            elif h.sop_uid in first_of:
                repeats.append((i, first_of[h.sop_uid]))
            else:
                first_of[h.sop_uid] = i
                fresh.append((i, h, size, target))
        if fresh:
            await self._write_and_index(fresh, temps, results)
        for i, first in repeats:
            done = results[first]
            results[i] = _same(done) if isinstance(done, StoredInstance) else done
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    async def _write_and_index(
        self,
        fresh: list[tuple[int, Header, int, Any]],
        temps: list[Path | bytes],
        results: list[Result | None],
    ) -> None:
        def prepare() -> list[Prepared | Failure]:
            out: list[Prepared | Failure] = []
            metas = []
            for _, h, _, _ in fresh:
                try:
                    metas.append(_metadata(h))
                except (ValueError, TypeError) as exc:
                    metas.append(_fail(h, CANNOT_UNDERSTAND, f"cannot make DICOM JSON: {exc}"))
            todo = [
                (temps[i], self.storage.relative_path(h.study_uid, h.series_uid, h.sop_uid))
                for (i, h, _, _), m in zip(fresh, metas, strict=True)
                if not isinstance(m, Failure)
            ]
            moved = iter(self.storage.commit_many(todo))
            for (i, h, size, target), meta in zip(fresh, metas, strict=True):
                if isinstance(meta, Failure):
                    out.append(meta)
                    continue
                final = next(moved)
                if isinstance(final, OSError):
                    out.append(_fail(h, OUT_OF_RESOURCES, f"cannot write: {final.strerror}"))
                    continue
                rel = str(final.relative_to(self.storage.root))
                out.append(Prepared(i, h, target, rel, size, *meta))
            return out

        prepared = await anyio.to_thread.run_sync(prepare)
        ready = [p for p in prepared if isinstance(p, Prepared)]
        for (i, _, _, _), p in zip(fresh, prepared, strict=True):
            if isinstance(p, Failure):
                results[i] = p
        outcome: list[Indexed | Rejected] = []
        for attempt in range(RETRIES):
            try:
                async with self.db() as session, session.begin():
                    outcome = await index_batch(session, ready)
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
                results[o.index] = _fail(p.header, o.reason, o.message)

    async def _after_failure(self, p: Prepared) -> Result:
        existing = await self._existing([p.header.sop_uid])
        if p.header.sop_uid in existing:  # same UIDs, same path: that file is theirs now
            return self._duplicate(p.header, existing[p.header.sop_uid])
        Storage.discard(self.storage.absolute(p.path))
        return _fail(p.header, OUT_OF_RESOURCES, "the index could not be updated; retry")

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
            .select_from(
                t.instances_with_parents()
            )
            .where(t.instances.c.sop_uid.in_(sops))
        )
        async with self.db() as session:
            return {r.sop_uid: r for r in await session.execute(query)}

    def _duplicate(self, h: Header, row: Any) -> Result:
        """Same SOP Instance UID again: idempotent success, file left unchanged."""
        if (row.study_uid, row.series_uid) != (h.study_uid, h.series_uid):
            return _fail(h, DATA_SET_MISMATCH, "SOP Instance UID already stored in another series")
        return _same(self._stored(h, row.exam_id, row.establishment_id, row.num_instances))

    def _stored(self, h: Header, exam: str | None, est: int | None, count: int) -> StoredInstance:
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


def _same(s: StoredInstance) -> StoredInstance:
    from dataclasses import replace

    return replace(s, duplicate=True)


def _fail(h: Header, reason: int, message: str) -> Failure:
    return Failure(reason, message, h.sop_class_uid, h.sop_uid)


def _attrs(h: Header) -> InstanceAttrs:
    return InstanceAttrs(
        study_uid=h.study_uid,
        series_uid=h.series_uid,
        sop_uid=h.sop_uid,
        sop_class_uid=h.sop_class_uid,
        accession_number=h.text("AccessionNumber"),
        patient_id=h.text("PatientID"),
        patient_name=h.text("PatientName"),
        modality=h.text("Modality"),
        dataset=h.dataset,
    )


def _metadata(h: Header) -> tuple[str, str, str]:
    base = f"{BASE}/studies/{h.study_uid}/series/{h.series_uid}/instances/{h.sop_uid}"
    members = instance_members(h, base)
    return (
        members_json(members, None, patient=False),
        members_json(members, STUDY_KEYS, patient=True),
        members_json(members, SERIES_KEYS, patient=False),
    )
