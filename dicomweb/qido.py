"""QIDO-RS, PS3.18 10.6: search for studies, series and instances.

One SQL query per request over indexed columns (``dicomweb.tables``); attributes
without a column come from the level's stored DICOM JSON only when asked for
with ``includefield``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import tables as t
from dicomweb.dicomxml import DICOM_XML, multipart_xml
from dicomweb.header import BASE
from dicomweb.http import accept_list, base_of, dicom_json, multipart_type, new_boundary
from dicomweb.matching import ATTRS, TABLES, Attr, Level, Query, base_select, parse
from dicomweb.types import Access, DicomwebError

NAMES = ("Alphabetic", "Ideographic", "Phonetic")
KEYS = {tag: f"{tag:08X}" for tag in ATTRS}
ACCEPTABLE = {"application/dicom+json", "application/json", "*/*", "application/*"}


def element(attr: Attr, raw: Any) -> dict[str, Any]:
    """One DICOM JSON attribute (PS3.18 F.2.2) from a column value."""
    if raw is None or raw == "":
        return {"vr": attr.vr}
    if attr.kind == "pn":
        groups = str(raw).split("=")
        return {"vr": "PN", "Value": [{k: g for k, g in zip(NAMES, groups, strict=False) if g}]}
    if attr.kind == "modalities":
        return {"vr": attr.vr, "Value": str(raw).split("\\")}
    if attr.kind == "int":
        return {"vr": attr.vr, "Value": [int(raw)]}
    return {"vr": attr.vr, "Value": [raw]}


async def search(
    request: Request,
    level: Level,
    db: async_sessionmaker[AsyncSession],
    access: Access,
    public_url: str | None,
) -> Response:
    """PS3.18 10.6.1 Search Transaction, at ``level``, scoped by the path's UIDs."""
    principal = await access.authenticate(request)
    xml = _wants_xml(request)
    study = request.path_params.get("study")
    series = request.path_params.get("series")
    if "\x00" in (study or "") + (series or ""):
        raise DicomwebError(400, "nul_character", "a UID in the path holds NUL")
    q = parse(level, request.query_params.multi_items(), scoped_study=study is not None)
    conditions: list[ColumnElement[bool]] = list(q.conditions)
    if study:
        conditions.append(t.studies.c.study_uid == study)
    if series:
        conditions.append(t.series.c.series_uid == series)
    scope = access.study_filter(principal)
    if scope is not None:
        conditions.append(scope)
    rows = await _fetch(db, q, conditions)
    base = base_of(request, public_url)
    body = [_dataset(q, row, base) for row in rows]
    if xml:
        boundary = new_boundary()
        payload = multipart_xml(body, boundary).replace(BASE.encode(), base.encode())
        return Response(payload, media_type=multipart_type(DICOM_XML, boundary))
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return dicom_json(text, base=base)


def _wants_xml(request: Request) -> bool:
    """PS3.18 10.6.3.3: DICOM JSON (the default) or, when the Accept prefers it,
    ``multipart/related; type="application/dicom+xml"``; anything else is 406."""
    for m in accept_list(request):
        if m.type in ACCEPTABLE:
            return False
        if m.type == DICOM_XML:
            return True
        if m.type == "multipart/related" and m.params.get("type", "").lower() == DICOM_XML:
            return True
    raise DicomwebError(
        406,
        "not_acceptable",
        'QIDO-RS answers application/dicom+json or multipart/related; type="application/dicom+xml"',
    )


def _sources(q: Query) -> list[Level]:
    if not (q.include_all or q.extra_tags):
        return []
    return [lvl for lvl in ("study", "series", "instance") if _le(lvl, q.level)]


def _le(a: str, b: str) -> bool:
    order = {"study": 0, "series": 1, "instance": 2}
    return order[a] <= order[b]


async def _fetch(
    db: async_sessionmaker[AsyncSession], q: Query, conditions: list[ColumnElement[bool]]
) -> list[Any]:
    cols = [TABLES[a.level].c[a.column].label(f"c{i}") for i, a in enumerate(q.columns)]
    cols.append(t.studies.c.study_uid.label("k_study"))
    if q.level != "study":
        cols.append(t.series.c.series_uid.label("k_series"))
    if q.level == "instance":
        cols.append(t.instances.c.sop_uid.label("k_sop"))
    for lvl in _sources(q):
        column = "metadata" if lvl == "instance" else "attrs"
        cols.append(TABLES[lvl].c[column].label(f"j_{lvl}"))
    stmt = (
        base_select(q.level)
        .add_columns(*cols)
        .where(*conditions)
        .order_by(TABLES[q.level].c.id)
        .limit(q.limit)
        .offset(q.offset)
    )
    async with db() as session:
        return list((await session.execute(stmt)).all())


ONLINE = {"vr": "CS", "Value": ["ONLINE"]}
UTF8 = {"vr": "CS", "Value": ["ISO_IR 192"]}


def _dataset(q: Query, row: Any, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mapping = row._mapping
    for lvl in _sources(q):
        attrs: dict[str, Any] = json.loads(mapping[f"j_{lvl}"])
        if q.include_all:
            out.update(attrs)
        else:
            for tag in q.extra_tags:
                key = f"{tag:08X}"
                if key in attrs:
                    out[key] = attrs[key]
    for i, attr in enumerate(q.columns):
        out[KEYS[attr.tag]] = element(attr, row[i])
    url = f"{BASE}/studies/{row.k_study}"
    if q.level != "study":
        url += f"/series/{row.k_series}"
        out["0020000D"] = {"vr": "UI", "Value": [row.k_study]}
    if q.level == "instance":
        url += f"/instances/{row.k_sop}"
        out["0020000E"] = {"vr": "UI", "Value": [row.k_series]}
    out["00080056"] = ONLINE
    out["00081190"] = {"vr": "UR", "Value": [url]}
    out["00080005"] = UTF8
    return {k: out[k] for k in sorted(out)}
