"""On-call resolution as values: bank holidays, templates, precedence (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from server.roster.service import (
    PARIS,
    Shift,
    ShiftTemplate,
    bank_holiday,
    bank_holidays,
    duties_at,
    easter,
    occurrence,
    roster_for,
)

HOPA, HOPB = 1, 2
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def template(rid: int, pattern: str, role: str = "primary", **kw: object) -> ShiftTemplate:
    values: dict[str, object] = {
        "id": rid * 10,
        "radiologist_id": rid,
        "role": role,
        "pattern": pattern,
        "start_time": None,
        "end_time": None,
        "establishment_ids": [],
        "valid_from": date(2026, 1, 1),
        "valid_until": None,
        "max_in_progress": 5,
    }
    values.update(kw)
    return ShiftTemplate(**values)


def shift(rid: int, start: datetime, end: datetime, **kw: object) -> Shift:
    values: dict[str, object] = {
        "id": rid * 100,
        "radiologist_id": rid,
        "role": "primary",
        "kind": "oncall",
        "starts_at": start,
        "ends_at": end,
        "establishment_ids": [],
        "max_in_progress": 5,
    }
    values.update(kw)
    return Shift(**values)


def primaries(at: datetime, shifts: list[Shift], templates: list[ShiftTemplate], est: int = HOPA):
    return [d.radiologist_id for d in roster_for(duties_at(at, shifts, templates), est).primary]


@pytest.mark.parametrize(
    ("year", "sunday"),
    [(2024, date(2024, 3, 31)), (2025, date(2025, 4, 20)), (2026, date(2026, 4, 5)),
     (2027, date(2027, 3, 28)), (2038, date(2038, 4, 25)), (2285, date(2285, 3, 22))],
)  # fmt: skip
def test_easter(year: int, sunday: date) -> None:
    assert easter(year) == sunday


def test_french_bank_holidays_2026() -> None:
    days = bank_holidays(2026)
    assert len(days) == 11
    assert days[date(2026, 4, 6)] == "Lundi de Pâques"
    assert days[date(2026, 5, 14)] == "Ascension"
    assert days[date(2026, 5, 25)] == "Lundi de Pentecôte"
    assert bank_holiday(date(2026, 7, 14)) == "Fête nationale"
    assert bank_holiday(date(2026, 4, 5)) is None  # Easter Sunday is a Sunday, not a holiday


def test_saturday_two_am_belongs_to_the_weekend_template() -> None:
    templates = [template(1, "weeknight"), template(2, "weekend")]
    # Saturday 16 January 2027, 02:00 in Paris: the weekend began Friday 18:30.
    assert primaries(local(2027, 1, 16, 2, 0), [], templates) == [2]
    assert primaries(local(2027, 1, 15, 18, 29), [], templates) == []  # Friday daytime
    assert primaries(local(2027, 1, 18, 8, 29), [], templates) == [2]  # Monday morning
    assert primaries(local(2027, 1, 18, 8, 30), [], templates) == []
    assert primaries(local(2027, 1, 14, 23, 0), [], templates) == [1]  # Thursday night
    assert primaries(local(2027, 1, 15, 7, 0), [], templates) == [1]  # ...until Friday 08:30


def test_bank_holiday_takes_over_from_the_weeknight() -> None:
    templates = [template(1, "weeknight"), template(3, "bank_holiday")]
    # Ascension 2026 is Thursday 14 May: 08:30 to Friday 08:30 belongs to the holiday.
    assert primaries(local(2026, 5, 14, 12, 0), [], templates) == [3]
    assert primaries(local(2026, 5, 14, 22, 0), [], templates) == [3]
    assert primaries(local(2026, 5, 13, 22, 0), [], templates) == [1]
    # Without a bank-holiday template, the weeknight radiologist still covers the night.
    assert primaries(local(2026, 5, 14, 22, 0), [], templates[:1]) == [1]


def test_a_shift_replaces_the_template_and_a_session_comes_first() -> None:
    templates = [template(1, "weeknight")]
    night = local(2026, 3, 10, 23, 0)
    swap = shift(4, local(2026, 3, 10, 18, 30), local(2026, 3, 11, 8, 30))
    assert primaries(night, [swap], templates) == [4]
    session = shift(5, local(2026, 3, 10, 20, 0), local(2026, 3, 11, 0, 0),
                    kind="session", establishment_ids=[HOPB])  # fmt: skip
    assert primaries(night, [swap, session], templates, HOPB) == [5, 4]
    assert primaries(night, [swap, session], templates, HOPA) == [4]


def test_establishments_validity_and_roles() -> None:
    templates = [
        template(1, "weeknight", establishment_ids=[HOPA]),
        template(2, "weeknight", establishment_ids=[HOPB], valid_until=date(2026, 3, 1)),
        template(6, "weeknight", role="backup"),
    ]
    at = local(2026, 2, 3, 22, 0)
    assert primaries(at, [], templates, HOPA) == [1]
    assert primaries(at, [], templates, HOPB) == [2]
    assert primaries(local(2026, 3, 3, 22, 0), [], templates, HOPB) == []
    assert [d.radiologist_id for d in roster_for(duties_at(at, [], templates), HOPB).backup] == [6]
    assert primaries(local(2025, 12, 30, 22, 0), [], templates, HOPA) == []  # before valid_from


def test_local_times_hold_across_daylight_saving() -> None:
    # The night of 28-29 March 2026 straddles the spring change (UTC+1 -> UTC+2).
    duty = occurrence(template(1, "weekend"), local(2026, 3, 29, 12, 0))
    assert duty is not None
    assert duty.starts_at.utcoffset() != duty.ends_at.utcoffset()
    assert duty.ends_at.astimezone(PARIS).hour == 8
    custom = template(1, "weeknight", start_time="20:00", end_time="07:00")
    assert occurrence(custom, local(2026, 3, 10, 19, 59)) is None
    assert occurrence(custom, local(2026, 3, 11, 6, 59)) is not None
