"""Billing acts and monthly statements, in integer cents.

Signing a report creates two acts from the tariff table
(``server/data/tariffs.json``, or the file ``TARIFFS_FILE`` names): the
technical act (forfait technique) billed by the establishment, and the
intellectual act billed by the signing radiologist, with the night, weekend
and bank-holiday supplements the table defines, judged in French local time.
Acts are frozen when created: a later change of the table never reprices
a past month.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base, Establishment, Exam, User

log = logging.getLogger("teleimagerie.billing")
DEFAULT_TARIFFS = Path(__file__).parent.parent / "data" / "tariffs.json"
TECHNICAL, INTELLECTUAL = "technical", "intellectual"


class BillingAct(Base):
    __tablename__ = "billing_acts"
    __table_args__ = (UniqueConstraint("exam_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"), index=True)
    radiologist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    ccam: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200))
    base_cents: Mapped[int] = mapped_column(Integer)
    supplements: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    supplements_cents: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(Integer)
    performed_at: Mapped[datetime] = mapped_column(index=True)
    tariff_version: Mapped[str] = mapped_column(String(32))


@cache
def load_tariffs(path: str | None = None) -> dict[str, Any]:
    source = Path(path or os.environ.get("TARIFFS_FILE") or DEFAULT_TARIFFS)
    data: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return data


# -- calendar (pure) ---------------------------------------------------------
# A small local copy: server/roster/service.py (built in parallel) owns the roster's
# calendar; once merged, billing should use that one.


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * ell) // 433
    month = (h + ell - 7 * m + 90) // 25
    day = (h + ell - 7 * m + 33 * month + 19) % 32
    return date(year, month, day)


def french_bank_holidays(year: int) -> frozenset[date]:
    """The eleven public holidays of metropolitan France."""
    sunday = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    movable = [sunday + timedelta(days=n) for n in (1, 39, 50)]
    return frozenset([date(year, m, d) for m, d in fixed] + movable)


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def supplements_for(at: datetime, tariffs: dict[str, Any]) -> list[dict[str, Any]]:
    """The supplements due for an act performed at ``at`` (any timezone)."""
    rules = tariffs["supplements"]
    local = at.astimezone(ZoneInfo(tariffs.get("timezone", "Europe/Paris")))
    due = []
    night = rules.get("night")
    if night:
        start, end = _hhmm(night["from"]), _hhmm(night["to"])
        now = local.time()
        if (now >= start or now < end) if start > end else (start <= now < end):
            due.append(night)
    if rules.get("weekend") and local.weekday() >= 5:
        due.append(rules["weekend"])
    if rules.get("bank_holiday") and local.date() in french_bank_holidays(local.year):
        due.append(rules["bank_holiday"])
    if rules.get("combine", "highest") == "highest" and due:
        due = [max(due, key=lambda s: s["cents"])]
    return [{"code": s["code"], "label": s["label"], "cents": int(s["cents"])} for s in due]


def tariff_for(modality: str, body_part: str, tariffs: dict[str, Any]) -> dict[str, Any]:
    part = body_part.strip().upper()
    candidates = [t for t in tariffs["acts"] if t["modality"] == modality]
    for entry in candidates:
        if part in entry["body_parts"]:
            return entry
    for entry in candidates:
        if "*" in entry["body_parts"]:
            return entry
    raise LookupError(f"the tariff table has no entry for {modality} {body_part}")


def price(modality: str, body_part: str, at: datetime, tariffs: dict[str, Any]) -> list[dict]:
    """The two acts of a signed exam, as plain values (no I/O)."""
    entry = tariff_for(modality, body_part, tariffs)
    extra = supplements_for(at, tariffs)
    applies = set(tariffs["supplements"].get("applies_to", [INTELLECTUAL]))
    acts = []
    for kind in (TECHNICAL, INTELLECTUAL):
        base = int(entry[f"{kind}_cents"])
        sups = extra if kind in applies else []
        sup_cents = sum(s["cents"] for s in sups)
        acts.append(
            {
                "kind": kind,
                "ccam": entry["ccam"],
                "label": entry["label"],
                "base_cents": base,
                "supplements": sups,
                "supplements_cents": sup_cents,
                "total_cents": base + sup_cents,
            }
        )
    return acts


async def create_acts(
    db: AsyncSession, exam: Exam, radiologist_id: int, at: datetime
) -> list[BillingAct]:
    """Write the two acts of a signature, in the signing transaction."""
    tariffs = load_tariffs()
    try:
        acts = price(exam.modality, exam.body_part, at, tariffs)
    except LookupError:
        # A gap in the table must not hold back a clinical report: bill it by hand.
        log.error(
            "no tariff for %s %s: exam %s signed unbilled", exam.modality, exam.body_part, exam.id
        )
        return []
    rows = [
        BillingAct(
            exam_id=exam.id,
            establishment_id=exam.establishment_id,
            radiologist_id=radiologist_id,
            performed_at=at,
            tariff_version=str(tariffs.get("version", "")),
            **act,
        )
        for act in acts
    ]
    db.add_all(rows)
    await db.flush()
    return rows


# -- statements --------------------------------------------------------------


def month_bounds(month: str, tz: str = "Europe/Paris") -> tuple[datetime, datetime]:
    """UTC bounds of a calendar month in local time; ValueError if not YYYY-MM."""
    start = datetime.strptime(month, "%Y-%m")
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    zone = ZoneInfo(tz)
    return start.replace(tzinfo=zone).astimezone(UTC), end.replace(tzinfo=zone).astimezone(UTC)


async def statement(
    db: AsyncSession, month: str, establishment: Establishment | None, radiologist_id: int | None
) -> dict[str, Any]:
    """Every act of the month (filtered), with totals per establishment and radiologist.

    A radiologist's statement holds their intellectual acts; an establishment's
    holds both kinds for its exams.
    """
    tariffs = load_tariffs()
    start, end = month_bounds(month, tariffs.get("timezone", "Europe/Paris"))
    stmt = (
        select(BillingAct, Exam.accession_number, Establishment, User)
        .join(Exam, Exam.id == BillingAct.exam_id)
        .join(Establishment, Establishment.id == BillingAct.establishment_id)
        .join(User, User.id == BillingAct.radiologist_id)
        .where(BillingAct.performed_at >= start, BillingAct.performed_at < end)
        .order_by(BillingAct.performed_at, BillingAct.id)
    )
    if establishment is not None:
        stmt = stmt.where(BillingAct.establishment_id == establishment.id)
    if radiologist_id is not None:
        stmt = stmt.where(
            BillingAct.radiologist_id == radiologist_id, BillingAct.kind == INTELLECTUAL
        )
    acts: list[dict[str, Any]] = []
    by_est: dict[str, dict[str, Any]] = {}  # by establishment code
    by_rad: dict[int, dict[str, Any]] = {}  # by radiologist id
    totals = {
        "count": 0,
        "technical_cents": 0,
        "intellectual_cents": 0,
        "supplements_cents": 0,
        "total_cents": 0,
    }
    for act, accession, est, rad in (await db.execute(stmt)).all():
        acts.append(
            {
                "id": act.id,
                "exam_id": act.exam_id,
                "accession_number": accession,
                "performed_at": act.performed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "kind": act.kind,
                "ccam": act.ccam,
                "label": act.label,
                "establishment": est.code,
                "radiologist": {
                    "id": rad.id,
                    "name": rad.display_name,
                    "rpps": rad.professional_id,
                },
                "base_cents": act.base_cents,
                "supplements": act.supplements,
                "supplements_cents": act.supplements_cents,
                "total_cents": act.total_cents,
            }
        )
        e = by_est.setdefault(
            est.code,
            {
                "code": est.code,
                "name": est.name,
                "count": 0,
                "technical_cents": 0,
                "intellectual_cents": 0,
                "total_cents": 0,
            },
        )
        r = by_rad.setdefault(
            rad.id,
            {
                "id": rad.id,
                "name": rad.display_name,
                "rpps": rad.professional_id,
                "count": 0,
                "intellectual_cents": 0,
                "total_cents": 0,
            },
        )
        for bucket in (totals, e):
            bucket["count"] += 1
            bucket[f"{act.kind}_cents"] += act.total_cents
            bucket["total_cents"] += act.total_cents
        totals["supplements_cents"] += act.supplements_cents
        if act.kind == INTELLECTUAL:
            r["count"] += 1
            r["intellectual_cents"] += act.total_cents
            r["total_cents"] += act.total_cents
    return {
        "month": month,
        "currency": tariffs.get("currency", "EUR"),
        "establishment": establishment.code if establishment else None,
        "radiologist": radiologist_id,
        "acts": acts,
        "totals": totals,
        "by_establishment": sorted(by_est.values(), key=lambda x: x["code"]),
        "by_radiologist": [r for r in sorted(by_rad.values(), key=lambda x: x["id"]) if r["count"]],
    }


CSV_COLUMNS = [
    "act_id",
    "performed_at",
    "kind",
    "establishment",
    "radiologist_id",
    "radiologist",
    "accession_number",
    "ccam",
    "label",
    "base_cents",
    "supplement_codes",
    "supplements_cents",
    "total_cents",
]


def statement_csv(doc: dict[str, Any]) -> str:
    """One row per act, then a TOTAL row; amounts in cents like the JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for a in doc["acts"]:
        writer.writerow(
            [
                a["id"],
                a["performed_at"],
                a["kind"],
                a["establishment"],
                a["radiologist"]["id"],
                a["radiologist"]["name"],
                a["accession_number"],
                a["ccam"],
                a["label"],
                a["base_cents"],
                "+".join(s["code"] for s in a["supplements"]),
                a["supplements_cents"],
                a["total_cents"],
            ]
        )
    t = doc["totals"]
    writer.writerow(
        [
            "TOTAL",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            f"{t['count']} acts",
            sum(a["base_cents"] for a in doc["acts"]),
            "",
            t["supplements_cents"],
            t["total_cents"],
        ]
    )
    return out.getvalue()
