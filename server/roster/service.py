"""The on-call roster: who is on duty for an establishment at a given time (docs/roster.md).

Two kinds of rows. A `Shift` is a concrete window (a one-off night, a replacement, or a
scheduled day session for one establishment). A `ShiftTemplate` recurs: weeknights
(Monday to Thursday evening until the next morning), weekends (Friday evening until
Monday morning) and French bank holidays (the day until the next morning), in local
time (Europe/Paris), so that the roster follows what the centre's planning says
across daylight-saving changes.

Resolution is pure (time is passed in) and decides per role (primary, backup): a
concrete shift beats every template, a bank holiday beats a weekend, which beats a
weeknight. So a coordinator swaps a night by adding a shift, and a bank-holiday
template takes over the weeknight one without anyone editing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base

PARIS = ZoneInfo("Europe/Paris")
ROLES = ("primary", "backup")
KINDS = ("oncall", "session")
PATTERNS = ("weeknight", "weekend", "bank_holiday")
# The charter asks for a bounded activity; a shift may set its own cap.
DEFAULT_MAX_IN_PROGRESS = 5

# pattern -> (start weekdays (ISO, None = bank holidays), days spanned, start, end)
_SHAPES: dict[str, tuple[frozenset[int] | None, int, time, time]] = {
    "weeknight": (frozenset({1, 2, 3, 4}), 1, time(18, 30), time(8, 30)),
    "weekend": (frozenset({5}), 3, time(18, 30), time(8, 30)),
    "bank_holiday": (None, 1, time(8, 30), time(8, 30)),
}
# Lower wins; sources within one tier are all on duty, ordered by rank.
_RANK = {"session": 0, "oncall": 1, "bank_holiday": 2, "weekend": 3, "weeknight": 4}
_TIER = {"session": 0, "oncall": 0, "bank_holiday": 1, "weekend": 2, "weeknight": 3}


class Shift(Base):
    __tablename__ = "shifts"
    __table_args__ = (Index("ix_shifts_window", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    radiologist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # primary | backup
    kind: Mapped[str] = mapped_column(String(8))  # oncall | session
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # Establishment ids covered; empty = every establishment.
    establishment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    max_in_progress: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_IN_PROGRESS)
    note: Mapped[str | None] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class ShiftTemplate(Base):
    __tablename__ = "shift_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    radiologist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    pattern: Mapped[str] = mapped_column(String(16))  # weeknight | weekend | bank_holiday
    start_time: Mapped[str | None] = mapped_column(String(5))  # "HH:MM" local; None = default
    end_time: Mapped[str | None] = mapped_column(String(5))
    establishment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)  # inclusive, local start date
    max_in_progress: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_IN_PROGRESS)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


# -- French bank holidays (Code du travail, art. L3133-1) -----------------------------


def easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Meeus/Jones/Butcher algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday) // 451
    month, day = divmod(h + weekday - 7 * m + 114, 31)
    return date(year, month, day + 1)


def bank_holidays(year: int) -> dict[date, str]:
    """The eleven national bank holidays of a year (not Alsace-Moselle's two extra)."""
    e = easter(year)
    return {
        date(year, 1, 1): "Jour de l'an",
        e + timedelta(days=1): "Lundi de Pâques",
        date(year, 5, 1): "Fête du Travail",
        date(year, 5, 8): "Victoire 1945",
        e + timedelta(days=39): "Ascension",
        e + timedelta(days=50): "Lundi de Pentecôte",
        date(year, 7, 14): "Fête nationale",
        date(year, 8, 15): "Assomption",
        date(year, 11, 1): "Toussaint",
        date(year, 11, 11): "Armistice 1918",
        date(year, 12, 25): "Noël",
    }


def bank_holiday(day: date) -> str | None:
    return bank_holidays(day.year).get(day)


# -- Resolution -----------------------------------------------------------------------


@dataclass(frozen=True)
class Duty:
    """One radiologist on duty over a window, from a shift or a template occurrence."""

    radiologist_id: int
    role: str
    source: str  # session | oncall | bank_holiday | weekend | weeknight
    starts_at: datetime
    ends_at: datetime
    establishment_ids: tuple[int, ...]
    max_in_progress: int
    shift_id: int | None = None
    template_id: int | None = None

    def covers(self, establishment_id: int) -> bool:
        return not self.establishment_ids or establishment_id in self.establishment_ids


def _hhmm(value: str | None, default: time) -> time:
    return time.fromisoformat(value) if value else default


def occurrence(template: ShiftTemplate, at: datetime, tz: ZoneInfo = PARIS) -> Duty | None:
    """The occurrence of `template` that covers `at`, if any."""
    weekdays, span, start_default, end_default = _SHAPES[template.pattern]
    start_t = _hhmm(template.start_time, start_default)
    end_t = _hhmm(template.end_time, end_default)
    local_day = at.astimezone(tz).date()
    for back in range(span + 1):
        day = local_day - timedelta(days=back)
        if day < template.valid_from or (template.valid_until and day > template.valid_until):
            continue
        starts = day.isoweekday() in weekdays if weekdays else bank_holiday(day) is not None
        if not starts:
            continue
        start = datetime.combine(day, start_t, tzinfo=tz)
        end = datetime.combine(day + timedelta(days=span), end_t, tzinfo=tz)
        if start <= at < end:
            return Duty(
                template.radiologist_id,
                template.role,
                template.pattern,
                start,
                end,
                tuple(template.establishment_ids or ()),
                template.max_in_progress,
                template_id=template.id,
            )
    return None


def duties_at(
    at: datetime,
    shifts: Iterable[Shift],
    templates: Iterable[ShiftTemplate],
    tz: ZoneInfo = PARIS,
) -> list[Duty]:
    """Every shift and template occurrence covering `at` (before precedence)."""
    found = [
        Duty(
            s.radiologist_id,
            s.role,
            s.kind,
            s.starts_at,
            s.ends_at,
            tuple(s.establishment_ids or ()),
            s.max_in_progress,
            shift_id=s.id,
        )
        for s in shifts
        if s.starts_at <= at < s.ends_at
    ]
    found += [d for t in templates if (d := occurrence(t, at, tz)) is not None]
    return found


def on_duty(duties: Iterable[Duty], establishment_id: int, role: str) -> list[Duty]:
    """Who holds `role` for an establishment: the best tier only, in precedence order."""
    mine = [d for d in duties if d.role == role and d.covers(establishment_id)]
    if not mine:
        return []
    best = min(_TIER[d.source] for d in mine)
    chosen = [d for d in mine if _TIER[d.source] == best]
    chosen.sort(key=lambda d: (_RANK[d.source], d.starts_at, d.radiologist_id))
    unique: dict[int, Duty] = {}
    for duty in chosen:  # a radiologist listed twice (two rows) counts once
        unique.setdefault(duty.radiologist_id, duty)
    return list(unique.values())


@dataclass(frozen=True)
class Roster:
    """Who is on duty for one establishment at one time."""

    establishment_id: int
    primary: list[Duty]
    backup: list[Duty]


def roster_for(duties: Sequence[Duty], establishment_id: int) -> Roster:
    return Roster(
        establishment_id,
        on_duty(duties, establishment_id, "primary"),
        on_duty(duties, establishment_id, "backup"),
    )


#: The shifts under way at ``:at``.
SHIFTS_COVERING = select(Shift).where(
    Shift.starts_at <= bindparam("at"), Shift.ends_at > bindparam("at")
)
#: The templates with an occurrence that can cover ``:at`` (a superset: `occurrence`
#: decides): valid from ``:day`` (the local date of ``:at``) or before, until ``:since``
#: (that date less the longest span) or after.
TEMPLATES_COVERING = select(ShiftTemplate).where(
    ShiftTemplate.valid_from <= bindparam("day"),
    or_(ShiftTemplate.valid_until.is_(None), ShiftTemplate.valid_until >= bindparam("since")),
)
_LONGEST = timedelta(days=max(span for _, span, _, _ in _SHAPES.values()))


def covering(at: datetime, tz: ZoneInfo = PARIS) -> dict[str, Any]:
    """The parameters of SHIFTS_COVERING and TEMPLATES_COVERING for `at`. The
    statements are built once: a statement built per call costs its cache key's
    computation every time."""
    local_day = at.astimezone(tz).date()
    return {"at": at, "day": local_day, "since": local_day - _LONGEST}


async def load_duties(db: AsyncSession, at: datetime, tz: ZoneInfo = PARIS) -> list[Duty]:
    """The duties covering `at`, read from SQL (only rows that can cover it)."""
    params = covering(at, tz)
    shifts = (await db.scalars(SHIFTS_COVERING, params)).all()
    templates = (await db.scalars(TEMPLATES_COVERING, params)).all()
    return duties_at(at, shifts, templates, tz)


def duty_json(duty: Duty, names: dict[int, Any]) -> dict[str, Any]:
    return {
        "radiologist": names.get(duty.radiologist_id, {"id": duty.radiologist_id}),
        "role": duty.role,
        "source": duty.source,
        "starts_at": duty.starts_at.astimezone(PARIS).isoformat(),
        "ends_at": duty.ends_at.astimezone(PARIS).isoformat(),
        "shift_id": duty.shift_id,
        "template_id": duty.template_id,
        "max_in_progress": duty.max_in_progress,
    }


async def load_demo_roster(db: AsyncSession, radiologists: dict[str, int], today: date) -> None:
    """The demo's recurring roster, once: one radiologist primary on nights, weekends and
    bank holidays, the other backup. Day sessions are concrete shifts, added by hand."""
    if await db.scalar(select(ShiftTemplate.id).limit(1)) is not None:
        return
    now = datetime.combine(today, time(), PARIS)
    for username, role in (("radiologue", "primary"), ("radiologue.astreinte", "backup")):
        for pattern in PATTERNS:
            db.add(
                ShiftTemplate(
                    radiologist_id=radiologists[username], role=role, pattern=pattern,
                    establishment_ids=[], valid_from=today, max_in_progress=DEFAULT_MAX_IN_PROGRESS,
                    created_at=now,
                )
            )  # fmt: skip
    await db.flush()
