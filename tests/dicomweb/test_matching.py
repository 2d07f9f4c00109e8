"""QIDO query parsing to SQL (PS3.18 8.3.4): pure, no database."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from dicomweb.matching import DEFAULT_LIMIT, MAX_LIMIT, like_pattern, parse
from dicomweb.types import DicomwebError


def sql(cond: object, dialect: str = "sqlite") -> str:
    d = sqlite.dialect() if dialect == "sqlite" else postgresql.dialect()
    return str(cond.compile(dialect=d, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "pattern"),
    [("Smi*", "Smi%"), ("a?c", "a_c"), ("50%", "50!%"), ("a_b*", "a!_b%"), ("x!y", "x!!y")],
)
def test_like_pattern(value: str, pattern: str) -> None:
    assert like_pattern(value) == pattern


def test_defaults_and_paging() -> None:
    q = parse("study", [])
    assert q.limit == DEFAULT_LIMIT and q.offset == 0 and not q.conditions
    assert parse("study", [("limit", "999999")]).limit == MAX_LIMIT
    keywords = [a.keyword for a in parse("study", []).columns]
    assert "PatientName" in keywords and "StudyInstanceUID" in keywords


def test_conditions() -> None:
    q = parse(
        "study",
        [("PatientName", "doe*"), ("StudyDate", "20200101-"), ("StudyInstanceUID", "1.2,1.3")],
    )
    text = " ".join(sql(c) for c in q.conditions)
    assert "patient_name_key LIKE 'DOE%' ESCAPE '!'" in text
    assert "study_date >= '20200101'" in text
    assert "study_uid IN ('1.2', '1.3')" in text


def test_time_range_upper_bound_is_inclusive() -> None:
    (cond,) = parse("study", [("StudyTime", "-1200")]).conditions
    assert "study_time <= '120099.999999'" in sql(cond)


def test_fuzzy_person_name() -> None:
    (cond,) = parse("study", [("fuzzymatching", "true"), ("PatientName", "jea")]).conditions
    text = sql(cond)
    assert "'JEA%'" in text and "'%^JEA%'" in text and "'% JEA%'" in text


def test_series_query_includes_study_attributes_unless_scoped() -> None:
    unscoped = [a.keyword for a in parse("series", []).columns]
    scoped = [a.keyword for a in parse("series", [], scoped_study=True).columns]
    assert "PatientID" in unscoped and "PatientID" not in scoped
    assert "Modality" in scoped


def test_includefield_tags_keywords_all() -> None:
    q = parse("study", [("includefield", "00081030,PatientAge"), ("includefield", "all")])
    assert q.include_all
    assert 0x00101010 in q.extra_tags


@pytest.mark.parametrize(
    "items",
    [
        [("Foo", "x")],
        [("SOPInstanceUID", "1.2")],
        [("offset", "x")],
        [("includefield", "Nope")],
        [("NumberOfStudyRelatedSeries", "1")],
    ],
)
def test_rejected(items: list[tuple[str, str]]) -> None:
    with pytest.raises(DicomwebError) as err:
        parse("study", items)
    assert err.value.status == 400
