"""Turnaround figures: how long each step of an exam took, and per establishment.

The promise is a report within the hour of complete images; what a coordinator needs
to see is where the time goes (waiting for a radiologist to accept, for the protocol,
for the acquisition, for the report, for the urgentist to read it). Milestones are
the exam's timestamp columns, set in the same UPDATE as the state change, so the
figures agree with the lifecycle. A revised protocol counts from its latest version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from server.core.models import Exam

MILESTONES = ("requested", "accepted", "protocol", "images_complete", "signed", "acknowledged")
# interval name -> (from milestone, to milestone)
INTERVALS = {
    "to_accept": ("requested", "accepted"),
    "to_protocol": ("accepted", "protocol"),
    "to_images": ("protocol", "images_complete"),
    "to_sign": ("images_complete", "signed"),
    "to_acknowledge": ("signed", "acknowledged"),
    "total": ("requested", "acknowledged"),
}


def milestones(exam: Exam) -> dict[str, datetime | None]:
    return {
        "requested": exam.created_at,
        "accepted": exam.accepted_at,
        "protocol": exam.protocoled_at,
        "images_complete": exam.images_complete_at,
        "signed": exam.reported_at,
        "acknowledged": exam.delivered_at,
    }


def figures(times: dict[str, datetime | None], sla_s: float, now: datetime) -> dict[str, Any]:
    """Pure: the intervals in seconds (None while a step is pending) and the SLA verdict.

    `within_sla` is None while the report is still in time, False as soon as it is late
    (signed late, or not signed past the deadline), True when signed in time.
    """
    intervals: dict[str, float | None] = {}
    for name, (start, end) in INTERVALS.items():
        a, b = times[start], times[end]
        intervals[name] = (b - a).total_seconds() if a and b else None
    within: bool | None = None
    images = times["images_complete"]
    if images is not None:
        deadline = images + timedelta(seconds=sla_s)
        signed = times["signed"]
        if signed is not None:
            within = signed <= deadline
        elif now > deadline:
            within = False
    return {"intervals": intervals, "within_sla": within}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pure: count, p50/p90/mean per interval and the SLA tally of some exams' figures."""
    out: dict[str, Any] = {"exams": len(rows), "intervals": {}}
    for name in INTERVALS:
        values = [r["intervals"][name] for r in rows if r["intervals"][name] is not None]
        out["intervals"][name] = {
            "n": len(values),
            "p50_s": percentile(values, 50),
            "p90_s": percentile(values, 90),
            "mean_s": round(sum(values) / len(values), 1) if values else None,
        }
    verdicts = [r["within_sla"] for r in rows if r["within_sla"] is not None]
    met = sum(1 for v in verdicts if v)
    out["sla"] = {
        "judged": len(verdicts),
        "met": met,
        "breached": len(verdicts) - met,
        "rate": round(met / len(verdicts), 4) if verdicts else None,
    }
    return out
