"""The monthly site report: an establishment's month in figures
(docs/accountability.md "Monthly site report").

The month is a calendar month in Europe/Paris (the hospitals' time, as the billing
statement's), and an exam belongs to the month it was requested in. Every time is
read from the exam's event log, pivoted in SQL: one grouped query gives each exam's
milestones (``MIN``/``MAX`` of ``CASE WHEN kind = ... THEN at END``), the same on
SQLite and PostgreSQL; a second reads the escalations raised. What is left (hours in
Paris time, percentiles, the contract's verdicts) is pure Python over one row per
exam, so 3,000 exams cost a few milliseconds beyond the queries.

The contract is the escalation policy of the configuration (docs/configuration.md),
with a stroke alert's own delays for stroke alerts: accept within ``ACK_TIMEOUT_S``,
the protocol acknowledged within ``PROTOCOL_ACK_TIMEOUT_S``, the report signed within
``REPORT_SLA_S`` of complete images, a critical result acknowledged within
``CRITICAL_ACK_TIMEOUT_S`` of the signature.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Policy
from rooms.types import EventKind
from server.core.models import Exam, ExamEvent
from server.exams.turnaround import percentile
from server.reports.service import Report

PARIS = ZoneInfo("Europe/Paris")
MODALITIES = ("CT", "MR", "CR", "DX")
WEEKDAYS = ("lun", "mar", "mer", "jeu", "ven", "sam", "dim")

# stage -> (from milestone, to milestone, the policy's delay for it or None)
STAGES: dict[str, tuple[str, str, str | None]] = {
    "accept": ("requested", "accepted", "ack_timeout_s"),
    "protocol": ("accepted", "protocol", None),
    "first_image": ("protocol", "first_image", None),
    "report": ("images_complete", "signed", "report_sla_s"),
    "acknowledge": ("signed", "acknowledged", None),
}
# deadline -> (from, to, the policy's delay, the escalation reason it raises)
DEADLINES: dict[str, tuple[str, str, str, str]] = {
    "accept": ("requested", "accepted", "ack_timeout_s", "not_accepted"),
    "protocol_ack": (
        "protocol",
        "protocol_ack",
        "protocol_ack_timeout_s",
        "protocol_not_acknowledged",
    ),
    "report": ("images_complete", "signed", "report_sla_s", "report_breach"),
    "critical": ("signed", "acknowledged", "critical_ack_timeout_s", "critical_not_acknowledged"),
}


@dataclass(frozen=True)
class ExamTimes:
    """One exam's milestones as its events give them."""

    exam_id: str
    accession_number: str
    modality: str
    stroke: bool
    critical: bool
    requested: datetime
    accepted: datetime | None
    protocol: datetime | None
    protocol_ack: datetime | None
    first_image: datetime | None
    images_complete: datetime | None
    signed: datetime | None
    acknowledged: datetime | None
    cancelled: datetime | None


@dataclass(frozen=True)
class Escalation:
    exam_id: str
    at: datetime
    level: int
    reason: str


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a YYYY-MM month in Paris time, as UTC datetimes; ValueError."""
    year, mon = (int(part) for part in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=PARIS)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=PARIS)
    return start.astimezone(UTC), end.astimezone(UTC)


async def load(
    db: AsyncSession, establishment_id: int, start: datetime, end: datetime
) -> tuple[list[ExamTimes], list[Escalation]]:
    """The month's exams with their milestones, and the escalations they raised."""
    kind, at = ExamEvent.kind, ExamEvent.at

    def first(k: str) -> Any:
        return func.min(case((kind == k, at)))

    def last(k: str) -> Any:
        return func.max(case((kind == k, at)))

    in_month = (
        Exam.establishment_id == establishment_id,
        Exam.created_at >= start,
        Exam.created_at < end,
    )
    stmt = (
        select(
            Exam.id,
            Exam.accession_number,
            Exam.modality,
            Exam.stroke_onset_kind,
            Report.critical,
            first(EventKind.EXAM_REQUESTED),
            first(EventKind.EXAM_ACCEPTED),
            last(EventKind.PROTOCOL_PROPOSED),  # a revision counts from its latest version
            last(EventKind.PROTOCOL_ACKNOWLEDGED),
            first(EventKind.IMAGES_RECEIVED),
            first(EventKind.EXAM_IMAGES_COMPLETE),
            first(EventKind.REPORT_SIGNED),
            first(EventKind.EXAM_DELIVERED),
            first(EventKind.EXAM_CANCELLED),
        )
        .join(ExamEvent, ExamEvent.exam_id == Exam.id)
        .outerjoin(Report, Report.exam_id == Exam.id)
        .where(*in_month)
        .group_by(
            Exam.id, Exam.accession_number, Exam.modality, Exam.stroke_onset_kind, Report.critical
        )
    )
    exams = [
        ExamTimes(
            exam_id=row[0],
            accession_number=row[1],
            modality=row[2],
            stroke=row[3] is not None,
            critical=bool(row[4]) and row[11] is not None,
            requested=row[5],
            accepted=row[6],
            protocol=row[7],
            protocol_ack=row[8],
            first_image=row[9],
            images_complete=row[10],
            signed=row[11],
            acknowledged=row[12],
            cancelled=row[13],
        )
        for row in (await db.execute(stmt)).all()
        if row[5] is not None
    ]
    raised = await db.execute(
        select(ExamEvent.exam_id, ExamEvent.at, ExamEvent.body)
        .join(Exam, Exam.id == ExamEvent.exam_id)
        .where(ExamEvent.kind == EventKind.ESCALATION_RAISED, *in_month)
        .order_by(ExamEvent.at)
    )
    escalations = [
        Escalation(exam_id, when, int(body.get("level", 0)), str(body.get("reason", "")))
        for exam_id, when, body in raised.all()
    ]
    return exams, escalations


def _delay(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


def _stats(values: Sequence[float], target: float | None) -> dict[str, Any]:
    within = sum(1 for v in values if target is not None and v <= target)
    return {
        "n": len(values),
        "p50_s": percentile(values, 50),
        "p90_s": percentile(values, 90),
        "p95_s": percentile(values, 95),
        "mean_s": round(sum(values) / len(values), 1) if values else None,
        "target_s": target,
        "within_target": within if target is not None else None,
        "within_rate": round(within / len(values), 4) if target is not None and values else None,
    }


def figures(
    exams: Sequence[ExamTimes],
    escalations: Sequence[Escalation],
    policy: Policy,
    now: datetime,
) -> dict[str, Any]:
    """Pure: the month's figures from its exams' milestones and escalations."""
    live = [e for e in exams if e.cancelled is None]
    by_hour = [0] * 24
    by_weekday = [0] * 7
    for e in live:
        local = e.requested.astimezone(PARIS)
        by_hour[local.hour] += 1
        by_weekday[local.weekday()] += 1
    modality = Counter(e.modality for e in live)

    def target(e: ExamTimes, name: str) -> float:
        return float(getattr(policy.for_stroke() if e.stroke else policy, name))

    stages: dict[str, Any] = {}
    for name, (a, b, delay) in STAGES.items():
        # Each exam's delay with its own contract (a stroke alert's is shorter);
        # target_s shows the ordinary one.
        pairs = [
            (v, target(e, delay) if delay else None)
            for e in live
            if (v := _delay(getattr(e, a), getattr(e, b))) is not None
        ]
        stats = _stats([v for v, _ in pairs], float(getattr(policy, delay)) if delay else None)
        if delay:
            stats["within_target"] = sum(1 for v, t in pairs if t is not None and v <= t)
            stats["within_rate"] = round(stats["within_target"] / len(pairs), 4) if pairs else None
        stages[name] = stats

    raised_by_exam: dict[str, list[Escalation]] = defaultdict(list)
    for esc in escalations:
        raised_by_exam[esc.exam_id].append(esc)
    deadlines: dict[str, Any] = {}
    missed: list[dict[str, Any]] = []
    for name, (a, b, delay, reason) in DEADLINES.items():
        count = 0
        for e in live:
            start, end = getattr(e, a), getattr(e, b)
            if start is None or (name == "critical" and not e.critical):
                continue
            limit = target(e, delay)
            late = (end if end is not None else now) - start
            if late.total_seconds() <= limit:
                continue
            count += 1
            raised = [x for x in raised_by_exam[e.exam_id] if x.reason == reason]
            missed.append(
                {
                    "exam": e.exam_id,
                    "accession_number": e.accession_number,
                    "deadline": name,
                    "due_at": _iso(start.timestamp() + limit),
                    "done_at": _iso(end.timestamp()) if end is not None else None,
                    "late_by_s": round(late.total_seconds() - limit, 1),
                    "escalations": [
                        {"level": x.level, "reason": x.reason, "at": _iso(x.at.timestamp())}
                        for x in raised
                    ],
                }
            )
        reasons = Counter(x.level for x in escalations if x.reason == reason)
        deadlines[name] = {
            "target_s": float(getattr(policy, delay)),
            "missed": count,
            "escalations": {str(level): n for level, n in sorted(reasons.items())},
        }
    missed.sort(key=lambda m: (m["due_at"], m["deadline"]))

    critical = [e for e in live if e.critical]
    critical_rows: list[dict[str, Any]] = [
        {
            "exam": e.exam_id,
            "accession_number": e.accession_number,
            "signed_at": _iso(e.signed.timestamp()) if e.signed else None,
            "acknowledged_at": _iso(e.acknowledged.timestamp()) if e.acknowledged else None,
            "delay_s": _delay(e.signed, e.acknowledged),
        }
        for e in sorted(critical, key=lambda e: e.signed or e.requested)
    ]
    delays = [float(r["delay_s"]) for r in critical_rows if r["delay_s"] is not None]
    return {
        "volumes": {
            "exams": len(live),
            "cancelled": len(exams) - len(live),
            "by_modality": {m: modality.get(m, 0) for m in sorted(set(MODALITIES) | set(modality))},
            "by_hour": by_hour,
            "by_weekday": dict(zip(WEEKDAYS, by_weekday, strict=True)),
        },
        "stages": stages,
        "deadlines": deadlines,
        "missed": missed,
        "escalations": {
            "raised": len(escalations),
            "by_reason": dict(sorted(Counter(x.reason for x in escalations).items())),
        },
        "critical": {
            "count": len(critical),
            "acknowledged": len(delays),
            "delays": _stats(delays, float(policy.critical_ack_timeout_s)),
            "results": critical_rows,
        },
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def monthly_report(
    db: AsyncSession, establishment: Any, month: str, policy: Policy, now: datetime
) -> dict[str, Any]:
    """The JSON of ``GET /api/stats/monthly`` for one establishment and month."""
    start, end = month_bounds(month)
    exams, escalations = await load(db, establishment.id, start, end)
    return {
        "month": month,
        "from": _iso(start.timestamp()),
        "to": _iso(end.timestamp()),
        "establishment": {"code": establishment.code, "name": establishment.name},
        "contract": {
            "ack_timeout_s": policy.ack_timeout_s,
            "protocol_ack_timeout_s": policy.protocol_ack_timeout_s,
            "report_sla_s": policy.report_sla_s,
            "critical_ack_timeout_s": policy.critical_ack_timeout_s,
            "stroke_ack_timeout_s": policy.stroke_ack_timeout_s,
            "stroke_report_sla_s": policy.stroke_report_sla_s,
        },
        "figures": figures(exams, escalations, policy, now),
    }
