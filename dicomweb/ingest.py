"""The one ingest path: STOW-RS (PS3.18 10.5) today, a C-STORE listener later.

``Ingestor.store`` validates a Part-10 instance, asks ``Access`` whether the caller
may store it, writes the received bytes unchanged and atomically, indexes it in SQL
in one transaction, then calls ``IngestHooks.on_stored``. A failure leaves nothing
behind: no file, no row.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import tables as t
from dicomweb.header import (
    BASE,
    SERIES_TAGS,
    STUDY_TAGS,
    Header,
    HeaderError,
    instance_json,
    level_json,
    read_header,
)
from dicomweb.storage import Storage
from dicomweb.types import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    Access,
    DicomwebConfig,
    Failure,
    IngestHooks,
    InstanceAttrs,
    Principal,
    StoredInstance,
    StoreTarget,
)

log = logging.getLogger(__name__)


def _date(value: str) -> str:
    return value.replace(".", "").replace("-", "")[:8]


def _time(value: str) -> str:
    return value.replace(":", "")[:16]


def person_key(value: str) -> str:
    """The form person names are matched on: upper case, trimmed components."""
    return value.upper().strip()


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
    ) -> StoredInstance | Failure:
        """Store one instance. ``data``: the Part-10 bytes or a file path; with
        ``owned=True`` the file (in the storage's temp dir) is moved, not copied.
        ``expected_study``: the study UID of a ``POST /studies/{study}``."""
        temp = await anyio.to_thread.run_sync(self._to_temp, data, owned)
        try:
            result = await self._store_temp(temp, principal, expected_study)
        except BaseException:
            Storage.discard(temp)
            raise
        if isinstance(result, Failure) or result.duplicate:
            Storage.discard(temp)
        elif self.hooks is not None:
            try:
                await self.hooks.on_stored(result)
            except Exception:
                log.exception("on_stored hook failed for %s", result.sop_uid)
        return result

    def _to_temp(self, data: bytes | Path, owned: bool) -> Path:
        if isinstance(data, Path) and owned:
            return data
        fd, temp = self.storage.new_temp()
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, Path):
                with data.open("rb") as src:
                    shutil.copyfileobj(src, out, 1024 * 1024)
            else:
                out.write(data)
        return temp

    def _parse(self, temp: Path) -> Header:
        size = temp.stat().st_size
        with temp.open("rb") as fp:
            return read_header(fp, size)

    async def _store_temp(
        self, temp: Path, principal: Principal, expected_study: str | None
    ) -> StoredInstance | Failure:
        try:
            header = await anyio.to_thread.run_sync(self._parse, temp)
        except HeaderError as exc:
            return Failure(exc.reason, exc.message)
        fail = _partial(header)
        if expected_study is not None and header.study_uid != expected_study:
            return fail(DATA_SET_MISMATCH, f"StudyInstanceUID is not {expected_study}")
        attrs = InstanceAttrs(
            study_uid=header.study_uid,
            series_uid=header.series_uid,
            sop_uid=header.sop_uid,
            sop_class_uid=header.sop_class_uid,
            accession_number=header.text("AccessionNumber"),
            patient_id=header.text("PatientID"),
            patient_name=header.text("PatientName"),
            modality=header.text("Modality"),
            dataset=header.dataset,
        )
        target = await self.access.authorize_store(principal, attrs)
        if target is None:
            return fail(NOT_AUTHORIZED, "not authorised to store this instance")
        existing = await self._existing(header)
        if existing is not None:
            return existing
        try:
            rel = self.storage.relative_path(header.study_uid, header.series_uid, header.sop_uid)
            meta = await anyio.to_thread.run_sync(self._metadata, header)
            size = await anyio.to_thread.run_sync(lambda: temp.stat().st_size)
            final = await anyio.to_thread.run_sync(self.storage.commit, temp, rel)
        except (ValueError, TypeError) as exc:
            return fail(CANNOT_UNDERSTAND, f"cannot convert the header to DICOM JSON: {exc}")
        except OSError as exc:
            return fail(OUT_OF_RESOURCES, f"cannot write the file: {exc.strerror}")
        try:
            return await self._index(header, target, rel, size, meta)
        except IntegrityError:
            existing = await self._existing(header)
            if existing is not None:
                return existing
            Storage.discard(final)
            return fail(PROCESSING_FAILURE, "concurrent update of the index; retry")
        except (SQLAlchemyError, _Conflict) as exc:
            Storage.discard(final)
            if isinstance(exc, _Conflict):
                return fail(exc.reason, exc.message)
            log.exception("indexing failed")
            return fail(OUT_OF_RESOURCES, "the index could not be updated")
        except BaseException:
            Storage.discard(final)
            raise

    def _metadata(self, header: Header) -> tuple[str, str, str]:
        base = (
            f"{BASE}/studies/{header.study_uid}/series/{header.series_uid}"
            f"/instances/{header.sop_uid}"
        )
        full = instance_json(header.dataset, header, base)
        parsed = json.loads(full)
        return (
            full,
            level_json(parsed, STUDY_TAGS, patient=True),
            level_json(parsed, SERIES_TAGS, patient=False),
        )

    def _urls(self, study: str, series: str, sop: str) -> tuple[str, str]:
        base = self.config.base_url()
        prefix = f"{base}/studies/{study}/series/{series}"
        return f"{prefix}/thumbnail", f"{prefix}/instances/{sop}"

    async def _existing(self, header: Header) -> StoredInstance | Failure | None:
        """Same SOP Instance UID again: idempotent success, file left unchanged."""
        query = (
            select(
                t.studies.c.study_uid,
                t.series.c.series_uid,
                t.series.c.modality,
                t.series.c.num_instances,
                t.studies.c.exam_id,
                t.studies.c.establishment_id,
            )
            .select_from(
                t.instances.join(t.series).join(
                    t.studies, t.studies.c.id == t.instances.c.study_pk
                )
            )
            .where(t.instances.c.sop_uid == header.sop_uid)
        )
        async with self.db() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        if (row.study_uid, row.series_uid) != (header.study_uid, header.series_uid):
            return _partial(header)(
                DATA_SET_MISMATCH, "this SOP Instance UID is already stored in another series"
            )
        thumb, retrieve = self._urls(row.study_uid, row.series_uid, header.sop_uid)
        return StoredInstance(
            study_uid=row.study_uid,
            series_uid=row.series_uid,
            sop_uid=header.sop_uid,
            sop_class_uid=header.sop_class_uid,
            modality=row.modality,
            exam_id=row.exam_id,
            establishment_id=row.establishment_id,
            series_instance_count=row.num_instances,
            thumbnail_url=thumb,
            retrieve_url=retrieve,
            duplicate=True,
        )

    async def _index(
        self, h: Header, target: StoreTarget, rel: str, size: int, meta: tuple[str, str, str]
    ) -> StoredInstance:
        full, study_attrs, series_attrs = meta
        now = int(time.time() * 1000)
        modality = h.text("Modality")[:16]
        async with self.db() as session, session.begin():
            study = (
                await session.execute(
                    select(
                        t.studies.c.id,
                        t.studies.c.modalities,
                        t.studies.c.exam_id,
                        t.studies.c.establishment_id,
                    ).where(t.studies.c.study_uid == h.study_uid)
                )
            ).first()
            if study is None:
                study_pk = (
                    await session.execute(
                        t.studies.insert()
                        .values(**_study_values(h, target, study_attrs, now))
                        .returning(t.studies.c.id)
                    )
                ).scalar_one()
                modalities = modality
                exam_id, est_id = target.exam_id, target.establishment_id
            else:
                study_pk = study.id
                exam_id = study.exam_id or target.exam_id
                est_id = study.establishment_id or target.establishment_id
                if (study.exam_id and target.exam_id and study.exam_id != target.exam_id) or (
                    study.establishment_id
                    and target.establishment_id
                    and study.establishment_id != target.establishment_id
                ):
                    raise _Conflict(NOT_AUTHORIZED, "this study belongs to another exam")
                modalities = study.modalities
                if modality and modality not in modalities.split("\\"):
                    modalities = f"{modalities}\\{modality}" if modalities else modality
            ser = (
                await session.execute(
                    select(t.series.c.id, t.series.c.study_pk).where(
                        t.series.c.series_uid == h.series_uid
                    )
                )
            ).first()
            new_series = ser is None
            if ser is None:
                series_pk = (
                    await session.execute(
                        t.series.insert()
                        .values(
                            study_pk=study_pk,
                            series_uid=h.series_uid,
                            modality=modality,
                            series_number=h.integer("SeriesNumber"),
                            series_description=h.text("SeriesDescription")[:320],
                            body_part_examined=h.text("BodyPartExamined")[:64],
                            series_date=_date(h.text("SeriesDate")),
                            series_time=_time(h.text("SeriesTime")),
                            num_instances=1,
                            attrs=series_attrs,
                        )
                        .returning(t.series.c.id)
                    )
                ).scalar_one()
                count = 1
            else:
                if ser.study_pk != study_pk:
                    raise _Conflict(DATA_SET_MISMATCH, "this series belongs to another study")
                series_pk = ser.id
                count = (
                    await session.execute(
                        update(t.series)
                        .where(t.series.c.id == series_pk)
                        .values(num_instances=t.series.c.num_instances + 1)
                        .returning(t.series.c.num_instances)
                    )
                ).scalar_one()
            await session.execute(
                update(t.studies)
                .where(t.studies.c.id == study_pk)
                .values(
                    num_instances=t.studies.c.num_instances + 1,
                    num_series=t.studies.c.num_series + (1 if new_series else 0),
                    modalities=modalities,
                    exam_id=exam_id,
                    establishment_id=est_id,
                )
            )
            await session.execute(
                t.instances.insert().values(
                    study_pk=study_pk,
                    series_pk=series_pk,
                    sop_uid=h.sop_uid,
                    sop_class_uid=h.sop_class_uid,
                    instance_number=h.integer("InstanceNumber"),
                    rows=h.integer("Rows"),
                    columns=h.integer("Columns"),
                    number_of_frames=h.integer("NumberOfFrames") or (1 if h.frames else None),
                    transfer_syntax_uid=h.transfer_syntax_uid,
                    path=rel,
                    size=size,
                    frames=json.dumps(h.frames, separators=(",", ":")) if h.frames else None,
                    metadata=full,
                    created_at=now,
                )
            )
        thumb, retrieve = self._urls(h.study_uid, h.series_uid, h.sop_uid)
        return StoredInstance(
            study_uid=h.study_uid,
            series_uid=h.series_uid,
            sop_uid=h.sop_uid,
            sop_class_uid=h.sop_class_uid,
            modality=modality,
            exam_id=exam_id,
            establishment_id=est_id,
            series_instance_count=count,
            thumbnail_url=thumb,
            retrieve_url=retrieve,
        )


class _Conflict(Exception):
    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _partial(h: Header):  # type: ignore[no-untyped-def]
    def fail(reason: int, message: str) -> Failure:
        return Failure(reason, message, h.sop_class_uid, h.sop_uid)

    return fail


def _study_values(h: Header, target: StoreTarget, attrs: str, now: int) -> dict[str, object]:
    name = h.text("PatientName")[:320]
    referring = h.text("ReferringPhysicianName")[:320]
    return {
        "study_uid": h.study_uid,
        "patient_name": name,
        "patient_name_key": person_key(name),
        "patient_id": h.text("PatientID")[:64],
        "patient_birth_date": _date(h.text("PatientBirthDate")),
        "patient_sex": h.text("PatientSex")[:16],
        "study_date": _date(h.text("StudyDate")),
        "study_time": _time(h.text("StudyTime")),
        "accession_number": h.text("AccessionNumber")[:64],
        "study_description": h.text("StudyDescription")[:320],
        "modalities": h.text("Modality")[:16],
        "referring_physician_name": referring,
        "referring_physician_key": person_key(referring),
        "study_id": h.text("StudyID")[:64],
        "num_series": 0,
        "num_instances": 0,
        "exam_id": target.exam_id,
        "establishment_id": target.establishment_id,
        "attrs": attrs,
        "created_at": now,
    }

