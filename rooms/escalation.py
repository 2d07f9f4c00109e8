"""Escalation policy: which deadlines an exam has pending, as a pure function of a snapshot.

The worker does not remember timers: after every change to an exam (and on start, for
every open exam) it recomputes `deadlines()` from SQL, schedules each one under its
`key` (rescheduling a key replaces it) and cancels the keys of `deadline_keys()` that
are no longer pending. Keys are stable, so this is idempotent and a flushed Redis is
rebuilt exactly. When a timer fires, the key is also the idempotency key of the
`escalation.raised` event, so a deadline rebuilt after it fired is not raised twice.

Times are epoch seconds (floats); `due_at` is when the escalation must be raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from rooms.types import ExamStatus


class Reason(StrEnum):
    """Why an escalation is raised; a code, so each client words it in its language."""

    NOT_ACCEPTED = "not_accepted"
    PROTOCOL_NOT_ACKNOWLEDGED = "protocol_not_acknowledged"
    REPORT_WARNING = "report_warning"
    REPORT_BREACH = "report_breach"
    CRITICAL_NOT_ACKNOWLEDGED = "critical_not_acknowledged"
    # Raised at once by routing, not by a timer (level 0): nobody can take the request.
    NOBODY_ON_DUTY = "nobody_on_duty"
    ALL_AT_CAPACITY = "all_at_capacity"


@dataclass(frozen=True)
class Policy:
    """Delays in seconds (docs/configuration.md: ACK_TIMEOUT_S, REPORT_WARN_S, REPORT_SLA_S)."""

    ack_timeout_s: float = 300
    report_warn_s: float = 2700
    report_sla_s: float = 3600
    protocol_ack_timeout_s: float = 300
    critical_ack_timeout_s: float = 600
    # A stroke alert's own delays (docs/configuration.md STROKE_*): every minute counts.
    stroke_ack_timeout_s: float = 60
    stroke_protocol_ack_timeout_s: float = 120
    stroke_report_warn_s: float = 600
    stroke_report_sla_s: float = 900

    def for_stroke(self) -> Policy:
        """The same policy with the stroke delays in place of the ordinary ones."""
        return replace(
            self,
            ack_timeout_s=self.stroke_ack_timeout_s,
            protocol_ack_timeout_s=self.stroke_protocol_ack_timeout_s,
            report_warn_s=self.stroke_report_warn_s,
            report_sla_s=self.stroke_report_sla_s,
        )


@dataclass(frozen=True)
class ExamSnapshot:
    """What the policy needs to know about an exam, read from SQL."""

    exam_id: str
    status: ExamStatus
    created_at: float
    accepted_at: float | None = None
    protocoled_at: float | None = None  # the latest protocol (a revision restarts the clock)
    protocol_ack_at: float | None = None
    images_complete_at: float | None = None
    reported_at: float | None = None
    critical: bool = False
    critical_acknowledged: bool = False
    stroke: bool = False  # a stroke alert: the policy's stroke delays apply


@dataclass(frozen=True)
class Deadline:
    """A pending escalation: at `due_at`, raise `level` for `reason` and notify groups.

    `notify` names groups the server resolves to people: "backup" (the backup
    radiologist on duty), "coordinators", "radiologist" (the assigned one), "urgentist"
    (the requester), "site_manipulators" and "site_urgentists" (of the establishment).
    """

    key: str
    due_at: float
    level: int
    reason: Reason
    notify: tuple[str, ...]


# Step name -> number of levels: the shape of every key the policy can produce.
_STEPS: dict[str, int] = {"accept": 2, "protocol_ack": 1, "report": 2, "critical": 2}


def _at(snapshot: ExamSnapshot, field: str) -> float:
    value = getattr(snapshot, field)
    if value is None:
        raise ValueError(f"exam {snapshot.exam_id} is {snapshot.status.value} but has no {field}")
    return float(value)


def deadlines(snapshot: ExamSnapshot, policy: Policy) -> list[Deadline]:
    """The escalations still pending for this exam, in level order.

    Pending means the awaited step has not happened, whether or not `due_at` has
    passed; a snapshot missing the timestamp its status implies raises ValueError.
    """
    s, p = snapshot, (policy.for_stroke() if snapshot.stroke else policy)

    def make(step: str, due_at: float, level: int, reason: Reason, *notify: str) -> Deadline:
        return Deadline(f"{s.exam_id}:{step}:{level}", due_at, level, reason, notify)

    match s.status:
        case ExamStatus.REQUESTED:
            t = float(s.created_at)
            return [
                make("accept", t + p.ack_timeout_s, 1, Reason.NOT_ACCEPTED, "backup"),
                make("accept", t + 2 * p.ack_timeout_s, 2, Reason.NOT_ACCEPTED, "coordinators"),
            ]
        case ExamStatus.PROTOCOLED:
            t = _at(s, "protocoled_at")
            reason = Reason.PROTOCOL_NOT_ACKNOWLEDGED
            return [
                make("protocol_ack", t + p.protocol_ack_timeout_s, 1, reason,
                     "site_manipulators", "urgentist"),
            ]  # fmt: skip
        case ExamStatus.IMAGES_COMPLETE:
            t = _at(s, "images_complete_at")
            return [
                make("report", t + p.report_warn_s, 1, Reason.REPORT_WARNING, "radiologist"),
                make("report", t + p.report_sla_s, 2, Reason.REPORT_BREACH,
                     "radiologist", "coordinators"),
            ]  # fmt: skip
        case ExamStatus.REPORTED if s.critical and not s.critical_acknowledged:
            t = _at(s, "reported_at")
            reason = Reason.CRITICAL_NOT_ACKNOWLEDGED
            delay = p.critical_ack_timeout_s
            return [
                make("critical", t + delay, 1, reason, "site_urgentists"),
                make("critical", t + 2 * delay, 2, reason, "coordinators"),
            ]
    return []


# The deadlines a client shows, by their name in the exam JSON (docs/rooms.md "The
# exam object"): how the key of the policy's deadline each one is ends (step, level).
SHOWN: dict[str, str] = {
    "accept_by": ":accept:1",
    "report_warning_at": ":report:1",
    "report_due_at": ":report:2",
}


def shown(pending: Iterable[Deadline]) -> dict[str, float | None]:
    """The shown deadlines among `pending`, by name; None for those not pending.

    The exam JSON and the worker's timers both come from `deadlines()`, so the
    countdown a user sees is the one that raises the escalation.
    """
    out: dict[str, float | None] = dict.fromkeys(SHOWN)
    for d in pending:
        for name, suffix in SHOWN.items():
            if d.key.endswith(suffix):
                out[name] = d.due_at
    return out


def deadline_keys(exam_id: str) -> tuple[str, ...]:
    """Every key the policy can produce for an exam: what to cancel when none is pending."""
    return tuple(
        f"{exam_id}:{step}:{level}"
        for step, levels in _STEPS.items()
        for level in range(1, levels + 1)
    )


def due(pending: Iterable[Deadline], now: float) -> list[Deadline]:
    """The deadlines whose time has come at `now` (inclusive), earliest first."""
    return sorted((d for d in pending if d.due_at <= now), key=lambda d: (d.due_at, d.key))


def parse_key(key: str) -> tuple[str, str, int]:
    """Split a deadline key into (exam_id, step, level); ValueError if it is not one."""
    exam_id, step, level = key.rsplit(":", 2)
    if step not in _STEPS or not level.isdigit() or not 1 <= int(level) <= _STEPS[step]:
        raise ValueError(f"not a deadline key: {key!r}")
    return exam_id, step, int(level)


def find(pending: Iterable[Deadline], key: str) -> Deadline | None:
    """The pending deadline with this key, or None when its condition no longer holds."""
    return next((d for d in pending if d.key == key), None)


def routing_key(exam_id: str) -> str:
    """The idempotency key of the level-0 alert routing raises when nobody can take a request."""
    return f"{exam_id}:route:0"
