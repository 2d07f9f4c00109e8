"""Writing the SQL index of a batch of instances in one transaction.

A STOW request of 200 slices is 200 rows in ``dicomweb_instances`` inserted by one
``executemany``, with the study and series rows looked up once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb import tables as t
from dicomweb.header import Summary
from dicomweb.types import DATA_SET_MISMATCH, NOT_AUTHORIZED, StoreTarget


def date(value: str) -> str:
    return value.replace(".", "").replace("-", "")[:8]


def tm(value: str) -> str:
    return value.replace(":", "")[:16]


def person_key(value: str) -> str:
    """The form person names are matched on: upper case."""
    return value.upper().strip()


@dataclass
class Prepared:
    """An instance whose file is in place, ready to be indexed."""

    index: int
    header: Summary
    target: StoreTarget
    path: str
    size: int
    metadata: str
    study_attrs: str
    series_attrs: str


@dataclass
class Indexed:
    index: int
    exam_id: str | None
    establishment_id: int | None
    series_count: int


@dataclass
class Rejected:
    index: int
    reason: int
    message: str


#: ``Access.study_identity`` (dicomweb/types.py): the patient columns a new study
#: row of an exam must have instead of its first instance's, or None.
StudyIdentity = Callable[
    [AsyncSession, str, Mapping[str, str]], Awaitable[Mapping[str, str] | None]
]
PATIENT_COLUMNS = ("patient_id", "patient_name", "patient_birth_date", "patient_sex")


async def new_study_values(
    session: AsyncSession, p: Prepared, now: int, study_identity: StudyIdentity | None
) -> dict[str, object]:
    """The row of a new study: its first instance's values, with the exam's patient
    identity when ``study_identity`` says it is another one now (the row is then
    marked corrected, dicomweb/identity.py)."""
    values = study_values(p, now)
    if study_identity is None or p.target.exam_id is None:
        return values
    stored = {k: str(values[k]) for k in PATIENT_COLUMNS}
    fixed = await study_identity(session, p.target.exam_id, stored)
    if fixed:
        values.update({k: fixed[k] for k in PATIENT_COLUMNS})
        values["patient_name_key"] = person_key(str(values["patient_name"]))
        values["identity_corrected_at"] = datetime.fromtimestamp(now / 1000, UTC).strftime(
            "%Y%m%d%H%M%S.%f%z"
        )
    return values


async def index_batch(
    session: AsyncSession, batch: list[Prepared], study_identity: StudyIdentity | None = None
) -> list[Indexed | Rejected]:
    """Insert the batch; the caller commits. Conflicting instances are rejected."""
    now = int(time.time() * 1000)
    study_uids = sorted({p.header.study_uid for p in batch})
    series_uids = sorted({p.header.series_uid for p in batch})
    studies: dict[str, Any] = {
        r.study_uid: r
        for r in await session.execute(
            select(
                t.studies.c.id,
                t.studies.c.study_uid,
                t.studies.c.modalities,
                t.studies.c.exam_id,
                t.studies.c.establishment_id,
            ).where(t.studies.c.study_uid.in_(study_uids))
        )
    }
    series: dict[str, Any] = {
        r.series_uid: r
        for r in await session.execute(
            select(
                t.series.c.id, t.series.c.series_uid, t.series.c.study_pk, t.series.c.num_instances
            ).where(t.series.c.series_uid.in_(series_uids))
        )
    }
    study_state: dict[str, dict[str, Any]] = {}
    series_state: dict[str, dict[str, Any]] = {}
    results: list[Indexed | Rejected] = []
    rows: list[dict[str, Any]] = []
    for p in batch:
        h = p.header
        st = study_state.get(h.study_uid)
        if st is None:
            row = studies.get(h.study_uid)
            if row is None:
                pk = (
                    await session.execute(
                        t.studies.insert()
                        .values(**await new_study_values(session, p, now, study_identity))
                        .returning(t.studies.c.id)
                    )
                ).scalar_one()
                st = {
                    "pk": pk,
                    "modalities": "",
                    "exam_id": p.target.exam_id,
                    "est": p.target.establishment_id,
                    "instances": 0,
                    "series": 0,
                }
            else:
                st = {
                    "pk": row.id,
                    "modalities": row.modalities,
                    "exam_id": row.exam_id,
                    "est": row.establishment_id,
                    "instances": 0,
                    "series": 0,
                }
            study_state[h.study_uid] = st
        if _conflicts(st, p.target):
            results.append(Rejected(p.index, NOT_AUTHORIZED, "this study belongs to another exam"))
            continue
        st["exam_id"] = st["exam_id"] or p.target.exam_id
        st["est"] = st["est"] or p.target.establishment_id
        se = series_state.get(h.series_uid)
        if se is None:
            row = series.get(h.series_uid)
            if row is None:
                pk = (
                    await session.execute(
                        t.series.insert()
                        .values(**series_values(p, st["pk"]))
                        .returning(t.series.c.id)
                    )
                ).scalar_one()
                se = {"pk": pk, "study_pk": st["pk"], "count": 0, "added": 0, "new": True}
                st["series"] += 1
            else:
                se = {
                    "pk": row.id,
                    "study_pk": row.study_pk,
                    "count": row.num_instances,
                    "added": 0,
                    "new": False,
                }
            series_state[h.series_uid] = se
        if se["study_pk"] != st["pk"]:
            results.append(
                Rejected(p.index, DATA_SET_MISMATCH, "this series belongs to another study")
            )
            continue
        modality = h.text("Modality")[:16]
        mods = st["modalities"].split("\\") if st["modalities"] else []
        if modality and modality not in mods:
            st["modalities"] = "\\".join([*mods, modality])
        se["count"] += 1
        se["added"] += 1
        st["instances"] += 1
        rows.append(instance_values(p, st["pk"], se["pk"], now))
        results.append(Indexed(p.index, st["exam_id"], st["est"], se["count"]))
    if rows:
        await session.execute(t.instances.insert(), rows)
    for se in series_state.values():
        if se["added"]:
            await session.execute(
                update(t.series)
                .where(t.series.c.id == se["pk"])
                .values(num_instances=t.series.c.num_instances + se["added"])
            )
    for st in study_state.values():
        await session.execute(
            update(t.studies)
            .where(t.studies.c.id == st["pk"])
            .values(
                num_instances=t.studies.c.num_instances + st["instances"],
                num_series=t.studies.c.num_series + st["series"],
                modalities=st["modalities"],
                exam_id=st["exam_id"],
                establishment_id=st["est"],
            )
        )
    return results


def _conflicts(st: dict[str, Any], target: StoreTarget) -> bool:
    return bool(
        (st["exam_id"] and target.exam_id and st["exam_id"] != target.exam_id)
        or (st["est"] and target.establishment_id and st["est"] != target.establishment_id)
    )


def study_values(p: Prepared, now: int) -> dict[str, object]:
    h = p.header
    name = h.text("PatientName")[:320]
    referring = h.text("ReferringPhysicianName")[:320]
    return {
        "study_uid": h.study_uid,
        "patient_name": name,
        "patient_name_key": person_key(name),
        "patient_id": h.text("PatientID")[:64],
        "patient_birth_date": date(h.text("PatientBirthDate")),
        "patient_sex": h.text("PatientSex")[:16],
        "study_date": date(h.text("StudyDate")),
        "study_time": tm(h.text("StudyTime")),
        "accession_number": h.text("AccessionNumber")[:64],
        "study_description": h.text("StudyDescription")[:320],
        "modalities": "",
        "referring_physician_name": referring,
        "referring_physician_key": person_key(referring),
        "study_id": h.text("StudyID")[:64],
        "num_series": 0,
        "num_instances": 0,
        "exam_id": p.target.exam_id,
        "establishment_id": p.target.establishment_id,
        "attrs": p.study_attrs,
        "created_at": now,
    }


def series_values(p: Prepared, study_pk: int) -> dict[str, object]:
    h = p.header
    return {
        "study_pk": study_pk,
        "series_uid": h.series_uid,
        "modality": h.text("Modality")[:16],
        "series_number": h.integer("SeriesNumber"),
        "series_description": h.text("SeriesDescription")[:320],
        "body_part_examined": h.text("BodyPartExamined")[:64],
        "series_date": date(h.text("SeriesDate")),
        "series_time": tm(h.text("SeriesTime")),
        "num_instances": 0,
        "attrs": p.series_attrs,
    }


def instance_values(p: Prepared, study_pk: int, series_pk: int, now: int) -> dict[str, object]:
    import json

    h = p.header
    return {
        "study_pk": study_pk,
        "series_pk": series_pk,
        "sop_uid": h.sop_uid,
        "sop_class_uid": h.sop_class_uid,
        "instance_number": h.integer("InstanceNumber"),
        "rows": h.integer("Rows"),
        "columns": h.integer("Columns"),
        "number_of_frames": h.integer("NumberOfFrames") or (1 if h.frames else None),
        "transfer_syntax_uid": h.transfer_syntax_uid,
        "path": p.path,
        "size": p.size,
        "frames": json.dumps(h.frames, separators=(",", ":")) if h.frames else None,
        "metadata": p.metadata,
        "created_at": now,
    }
