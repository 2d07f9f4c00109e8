"""QIDO-RS query parameters to SQL, PS3.18 8.3.4 and PS3.4 C.2.2.2 matching.

Pure: takes the decoded query items and returns SQLAlchemy conditions, the
requested return attributes and paging; no I/O. Values arrive percent-decoded
once (Starlette), so ``%2A``, ``%2C`` and ``%2D`` from dicomweb-client work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag
from sqlalchemy import ColumnElement, Select, and_, exists, or_, select
from sqlalchemy.sql.elements import ColumnElement as _CE

from dicomweb import tables as t
from dicomweb.types import DicomwebError

Level = Literal["study", "series", "instance"]
Kind = Literal["uid", "text", "pn", "date", "time", "int", "modalities"]
ESC = "!"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000


@dataclass(frozen=True)
class Attr:
    tag: int
    keyword: str
    level: Level
    column: str
    kind: Kind
    vr: str


def _attr(keyword: str, level: Level, column: str, kind: Kind) -> Attr:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attr(tag, keyword, level, column, kind, dictionary_VR(tag))


ATTRS: dict[int, Attr] = {
    a.tag: a
    for a in (
        _attr("StudyInstanceUID", "study", "study_uid", "uid"),
        _attr("PatientName", "study", "patient_name", "pn"),
        _attr("PatientID", "study", "patient_id", "text"),
        _attr("PatientBirthDate", "study", "patient_birth_date", "date"),
        _attr("PatientSex", "study", "patient_sex", "text"),
        _attr("StudyDate", "study", "study_date", "date"),
        _attr("StudyTime", "study", "study_time", "time"),
        _attr("AccessionNumber", "study", "accession_number", "text"),
        _attr("StudyDescription", "study", "study_description", "text"),
        _attr("ModalitiesInStudy", "study", "modalities", "modalities"),
        _attr("ReferringPhysicianName", "study", "referring_physician_name", "pn"),
        _attr("StudyID", "study", "study_id", "text"),
        _attr("NumberOfStudyRelatedSeries", "study", "num_series", "int"),
        _attr("NumberOfStudyRelatedInstances", "study", "num_instances", "int"),
        _attr("SeriesInstanceUID", "series", "series_uid", "uid"),
        _attr("Modality", "series", "modality", "text"),
        _attr("SeriesNumber", "series", "series_number", "int"),
        _attr("SeriesDescription", "series", "series_description", "text"),
        _attr("BodyPartExamined", "series", "body_part_examined", "text"),
        _attr("SeriesDate", "series", "series_date", "date"),
        _attr("SeriesTime", "series", "series_time", "time"),
        _attr("NumberOfSeriesRelatedInstances", "series", "num_instances", "int"),
        _attr("SOPInstanceUID", "instance", "sop_uid", "uid"),
        _attr("SOPClassUID", "instance", "sop_class_uid", "uid"),
        _attr("InstanceNumber", "instance", "instance_number", "int"),
        _attr("Rows", "instance", "rows", "int"),
        _attr("Columns", "instance", "columns", "int"),
        _attr("NumberOfFrames", "instance", "number_of_frames", "int"),
    )
}
TABLES = {"study": t.studies, "series": t.series, "instance": t.instances}
LEVELS: tuple[Level, ...] = ("study", "series", "instance")
ORDER = {"study": 0, "series": 1, "instance": 2}
DEFAULTS: dict[Level, tuple[str, ...]] = {
    "study": (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "Modality",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    "instance": (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
    ),
}
PN_KEYS = {
    "patient_name": "patient_name_key",
    "referring_physician_name": "referring_physician_key",
}
CONTROL = {"limit", "offset", "fuzzymatching", "includefield"}


@dataclass
class Query:
    level: Level
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    columns: list[Attr] = field(default_factory=list)
    extra_tags: set[int] = field(default_factory=set)
    include_all: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    fuzzy: bool = False


def resolve(key: str) -> int:
    """A tag from ``00100010`` or ``PatientName``; 400 when it is neither."""
    if len(key) == 8:
        try:
            tag = int(key, 16)
            if keyword_for_tag(tag) or tag >> 16 & 1:
                return tag
        except ValueError:
            pass
    known = tag_for_keyword(key)
    if known is None:
        raise DicomwebError(400, "bad_query", f"unknown query key or attribute: {key!r}")
    return known


def parse(level: Level, items: Iterable[tuple[str, str]], scoped_study: bool = False) -> Query:
    """Build a :class:`Query` from decoded query items (PS3.18 8.3.4)."""
    q = Query(level)
    matches: list[tuple[Attr, str]] = []
    for key, value in items:
        if "\x00" in key or "\x00" in value:
            # PS3.18 8.3.4: a value must be one the attribute can hold; NUL is in no VR's
            # character repertoire (PS3.5 6.2), and PostgreSQL refuses it in text.
            raise DicomwebError(400, "nul_character", "a query key or value holds NUL")
        lk = key.lower()
        if lk == "limit":
            q.limit = min(_int(key, value), MAX_LIMIT)
        elif lk == "offset":
            q.offset = _int(key, value)
        elif lk == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise DicomwebError(400, "bad_query", "fuzzymatching must be true or false")
            q.fuzzy = value.lower() == "true"
        elif lk == "includefield":
            for name in value.replace("\\", ",").split(","):
                name = name.strip()
                if not name:
                    continue
                if name.lower() == "all":
                    q.include_all = True
                    continue
                tag = resolve(name)
                if tag in ATTRS and ORDER[ATTRS[tag].level] <= ORDER[level]:
                    _add(q.columns, ATTRS[tag])
                else:
                    q.extra_tags.add(tag)
        else:
            if "." in key:
                raise DicomwebError(400, "bad_query", f"sequence matching is not supported: {key}")
            tag = resolve(key)
            attr = ATTRS.get(tag)
            if (
                attr is None
                or ORDER[attr.level] > ORDER[level]
                or attr.kind == "int"
                and (attr.column.startswith("num"))
            ):
                raise DicomwebError(
                    400,
                    "bad_query",
                    f"{keyword_for_tag(tag) or key} is not a matching key "
                    f"for a {level} query; supported: {', '.join(matching_keys(level))}",
                )
            matches.append((attr, value))
            _add(q.columns, attr)
    for attr, value in matches:
        cond = condition(attr, value, q.fuzzy)
        if cond is not None:
            q.conditions.append(cond)
    for lvl in LEVELS:
        if ORDER[lvl] > ORDER[level]:
            break
        if lvl == "study" and level != "study" and scoped_study:
            _add(q.columns, ATTRS[Tag("StudyInstanceUID")])
            continue
        for kw in DEFAULTS[lvl]:
            _add(q.columns, ATTRS[Tag(kw)])
    return q


def matching_keys(level: Level) -> list[str]:
    return [
        a.keyword
        for a in ATTRS.values()
        if ORDER[a.level] <= ORDER[level] and not a.column.startswith("num")
    ]


def _add(columns: list[Attr], attr: Attr) -> None:
    if attr not in columns:
        columns.append(attr)


INT_MAX = 2**31 - 1  # IS, PS3.5 Table 6.2-1; also every integer column of the index


def _int(key: str, value: str) -> int:
    # ASCII digits only ("²".isdigit() is true), and short enough to convert cheaply.
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > INT_MAX:
        raise DicomwebError(400, "bad_query", f"{key} must be an integer from 0 to {INT_MAX}")
    return int(value)


def like_pattern(value: str) -> str:
    """DICOM wildcards ``*`` ``?`` to SQL LIKE, escaping LIKE's own ``%`` ``_``."""
    out = value.replace(ESC, ESC + ESC).replace("%", ESC + "%").replace("_", ESC + "_")
    return out.replace("*", "%").replace("?", "_")


def condition(attr: Attr, value: str, fuzzy: bool) -> ColumnElement[bool] | None:
    """PS3.4 C.2.2.2: single value, wildcard, list of UID, range matching."""
    if value in ("", "*"):
        return None
    col = TABLES[attr.level].c[attr.column]
    if attr.kind == "uid":
        uids = [u.strip() for u in value.replace("\\", ",").split(",") if u.strip()]
        return col.in_(uids) if len(uids) > 1 else col == uids[0]
    if attr.kind in ("date", "time"):
        return _range(
            col,
            value.replace(":", "").replace(".", "")
            if attr.kind == "date"
            else value.replace(":", ""),
            attr.kind,
        )
    if attr.kind == "int":
        number = value.strip()
        digits = number.removeprefix("-").removeprefix("+")
        # An IS value (PS3.5 Table 6.2-1): at most 12 characters, within 32 bits.
        if not (digits.isascii() and digits.isdigit()) or len(number) > 12:
            raise DicomwebError(400, "bad_query", f"{attr.keyword} must be an integer")
        if not -INT_MAX - 1 <= int(number) <= INT_MAX:
            raise DicomwebError(400, "bad_query", f"{attr.keyword} is out of the IS range")
        return col == int(number)
    if attr.kind == "modalities":
        wanted = [m.strip() for m in value.replace("\\", ",").split(",") if m.strip()]
        return exists(
            select(t.series.c.id).where(
                t.series.c.study_pk == t.studies.c.id, t.series.c.modality.in_(wanted)
            )
        )
    if attr.kind == "pn":
        key = TABLES[attr.level].c[PN_KEYS[attr.column]]
        value = value.upper()
        if fuzzy:
            p = like_pattern(value.rstrip("*")) + "%"
            return or_(
                key.like(p, escape=ESC),
                key.like("%^" + p, escape=ESC),
                key.like("% " + p, escape=ESC),
            )
        return _text(key, value)
    return _text(col, value)


def _text(col: _CE[str], value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        return col.like(like_pattern(value), escape=ESC)
    return col == value


def _range(col: _CE[str], value: str, kind: str) -> ColumnElement[bool]:
    if "-" not in value:
        return col.like(like_pattern(value) + "%", escape=ESC) if kind == "time" else (col == value)
    low, _, high = value.partition("-")
    if kind == "time" and high:
        high = high + "999999.999999"[len(high) :] if len(high) < 13 else high
    parts = []
    if low:
        parts.append(col >= low)
    if high:
        parts.append(col <= high)
    if not parts:
        raise DicomwebError(400, "bad_query", f"empty range: {value!r}")
    return and_(*parts, col != "")


def base_select(level: Level) -> Select[tuple[object, ...]]:
    """The FROM clause of a level: series and instances join up to their study."""
    if level == "study":
        return select().select_from(t.studies)
    if level == "series":
        return select().select_from(t.series.join(t.studies, t.series.c.study_pk == t.studies.c.id))
    return select().select_from(t.instances_with_parents())
