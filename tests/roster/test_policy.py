"""The escalation policy (rooms.escalation) and routing choice, as values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rooms.escalation import (
    ExamSnapshot,
    Policy,
    Reason,
    deadline_keys,
    deadlines,
    due,
    find,
    parse_key,
)
from rooms.types import ExamStatus
from server.exams.routing import pick
from server.roster.service import Duty, Roster

P = Policy(ack_timeout_s=60, report_warn_s=2700, report_sla_s=3600,
           protocol_ack_timeout_s=120, critical_ack_timeout_s=600)  # fmt: skip


def test_requested_escalates_to_backup_then_coordinators() -> None:
    pending = deadlines(ExamSnapshot("e1", ExamStatus.REQUESTED, created_at=1000.0), P)
    assert [(d.key, d.due_at, d.notify) for d in pending] == [
        ("e1:accept:1", 1060.0, ("backup",)),
        ("e1:accept:2", 1120.0, ("coordinators",)),
    ]
    assert [d.key for d in due(pending, 1060.0)] == ["e1:accept:1"]
    assert find(pending, "e1:accept:2") is pending[1]
    assert find(pending, "e1:report:1") is None


def test_each_state_has_its_deadlines() -> None:
    s = ExamSnapshot("e", ExamStatus.PROTOCOLED, 0.0, 1.0, protocoled_at=10.0)
    assert [(d.reason, d.due_at) for d in deadlines(s, P)] == [
        (Reason.PROTOCOL_NOT_ACKNOWLEDGED, 130.0)
    ]
    s = ExamSnapshot("e", ExamStatus.IMAGES_COMPLETE, 0.0, images_complete_at=100.0)
    assert [(d.reason, d.due_at) for d in deadlines(s, P)] == [
        (Reason.REPORT_WARNING, 2800.0),
        (Reason.REPORT_BREACH, 3700.0),
    ]
    s = ExamSnapshot("e", ExamStatus.REPORTED, 0.0, reported_at=50.0, critical=True)
    assert [d.notify for d in deadlines(s, P)] == [("site_urgentists",), ("coordinators",)]
    assert deadlines(ExamSnapshot("e", ExamStatus.REPORTED, 0.0, reported_at=50.0), P) == []
    assert deadlines(ExamSnapshot("e", ExamStatus.ACQUIRING, 0.0), P) == []
    with pytest.raises(ValueError, match="protocoled_at"):
        deadlines(ExamSnapshot("e", ExamStatus.PROTOCOLED, 0.0), P)


def test_keys_parse_back() -> None:
    for key in deadline_keys("3f1c-uuid"):
        exam_id, step, level = parse_key(key)
        assert f"{exam_id}:{step}:{level}" == key
    for bad in ("e:accept:3", "e:route:0", "nonsense", "e:report:x"):
        with pytest.raises(ValueError):
            parse_key(bad)


def duty(rid: int, cap: int = 2, role: str = "primary") -> Duty:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return Duty(rid, role, "weeknight", t, t, (), cap)


def test_routing_respects_the_cap() -> None:
    roster = Roster(1, [duty(1), duty(2)], [duty(9, role="backup")])
    assert pick(roster, {}).radiologist_id == 1
    assert pick(roster, {1: 2}).radiologist_id == 2
    assert pick(roster, {1: 2, 2: 5}).radiologist_id == 9
    full = pick(roster, {1: 2, 2: 2, 9: 2})
    assert (full.radiologist_id, full.reason) == (None, Reason.ALL_AT_CAPACITY)
    nobody = pick(Roster(1, [], []), {})
    assert (nobody.radiologist_id, nobody.reason) == (None, Reason.NOBODY_ON_DUTY)
