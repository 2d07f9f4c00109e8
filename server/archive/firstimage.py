"""The first image a room's viewer shows (docs/api.md "The first image of a room").

The room's viewer opens the series of the exam's first ``images.received`` event and
shows the slice that comes first along the normal of the image plane (PS3.3
C.7.6.2.1.1), the order of frontend/imaging.js ``seriesFromMetadata``. Named here,
from the archive's index, a page opened on the room asks for that slice rendered by the
archive at once, before the series' metadata and the viewer's library (docs/frontend.md
"The first image before the viewer").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb.tables import instances, series, studies
from rooms.types import EventKind
from server.core.models import ExamEvent


@dataclass(frozen=True)
class Slice:
    """One instance of a series as the index holds it."""

    sop_uid: str
    number: int
    #: Its position along the series' normal (mm), None without a geometry.
    position: float | None


def _values(ds: dict[str, Any], tag: str) -> list[Any]:
    return list((ds.get(tag) or {}).get("Value") or [])


def slices_of(metadata: Iterable[tuple[str, int | None, str]]) -> list[Slice]:
    """(SOP instance UID, instance number, DICOM JSON) to slices, each placed
    along the normal of the first one's ImageOrientationPatient (as the viewer does)."""
    rows = list(metadata)
    normal: list[float] | None = None
    out = []
    for i, (sop, number, text) in enumerate(rows):
        ds = json.loads(text) if text else {}
        if i == 0:
            iop = [float(x) for x in _values(ds, "00200037")]
            if len(iop) == 6:
                r, c = iop[:3], iop[3:]
                normal = [
                    r[1] * c[2] - r[2] * c[1],
                    r[2] * c[0] - r[0] * c[2],
                    r[0] * c[1] - r[1] * c[0],
                ]
        ipp = [float(x) for x in _values(ds, "00200032")]
        position = (
            sum(a * b for a, b in zip(ipp, normal, strict=True))
            if normal is not None and len(ipp) == 3
            else None
        )
        out.append(Slice(sop, number or 0, position))
    return out


def first_slice(slices: list[Slice]) -> Slice | None:
    """The slice the viewer's stack starts with: the lowest position along the normal
    when every slice has one, else the lowest instance number (ties: index order)."""
    if not slices:
        return None
    if all(s.position is not None for s in slices):
        return min(slices, key=lambda s: (s.position, s.number))
    return min(slices, key=lambda s: s.number)


async def first_image(db: AsyncSession, exam_id: str) -> dict[str, Any] | None:
    """What the room's viewer shows first: the series of the exam's first
    ``images.received`` event and its first slice, or None (no image yet)."""
    body = await db.scalar(
        select(ExamEvent.body)
        .where(ExamEvent.exam_id == exam_id, ExamEvent.kind == EventKind.IMAGES_RECEIVED.value)
        .order_by(ExamEvent.seq)
        .limit(1)
    )
    if not body or not body.get("series_uid"):
        return None
    rows = (
        await db.execute(
            select(
                instances.c.sop_uid,
                instances.c.instance_number,
                instances.c.metadata,
                studies.c.study_uid,
            )
            .join(series, instances.c.series_pk == series.c.id)
            .join(studies, series.c.study_pk == studies.c.id)
            .where(series.c.series_uid == body["series_uid"])
            .order_by(instances.c.id)
        )
    ).all()
    first = first_slice(slices_of((r.sop_uid, r.instance_number, r.metadata) for r in rows))
    if first is None:
        return None
    study = rows[0].study_uid
    base = f"/dicomweb/studies/{study}/series/{body['series_uid']}/instances/{first.sop_uid}"
    return {
        "study_instance_uid": study,
        "series_instance_uid": body["series_uid"],
        "sop_instance_uid": first.sop_uid,
        "frame": 1,
        "instances": len(rows),
        "metadata_url": f"{base}/metadata",
        "rendered_url": f"{base}/frames/1/rendered",
        # The series as the room's thumbnail shows it (the images.received body).
        "series": {**body, "count": max(int(body.get("count") or 0), len(rows))},
    }
