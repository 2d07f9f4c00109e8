import pytest

from rooms.escalation import (
    Deadline,
    ExamSnapshot,
    Policy,
    Reason,
    deadline_keys,
    deadlines,
    due,
)
from rooms.types import ExamStatus as S

T0 = 1_800_000_000.0  # created_at
POLICY = Policy()


def snap(status: S, **times: float | bool) -> ExamSnapshot:
    return ExamSnapshot(exam_id="e42", status=status, created_at=T0, **times)  # type: ignore[arg-type]


def test_default_policy_is_the_documented_one() -> None:
    assert POLICY == Policy(
        ack_timeout_s=300,
        report_warn_s=2700,
        report_sla_s=3600,
        protocol_ack_timeout_s=300,
        critical_ack_timeout_s=600,
    )


def test_a_request_not_accepted_goes_to_the_backup_then_the_coordinators() -> None:
    assert deadlines(snap(S.REQUESTED), POLICY) == [
        Deadline("e42:accept:1", T0 + 300, 1, Reason.NOT_ACCEPTED, ("backup",)),
        Deadline("e42:accept:2", T0 + 600, 2, Reason.NOT_ACCEPTED, ("coordinators",)),
    ]


def test_a_protocol_not_acknowledged_warns_the_site() -> None:
    exam = snap(S.PROTOCOLED, accepted_at=T0 + 60, protocoled_at=T0 + 120)
    assert deadlines(exam, POLICY) == [
        Deadline(
            "e42:protocol_ack:1",
            T0 + 420,
            1,
            Reason.PROTOCOL_NOT_ACKNOWLEDGED,
            ("site_manipulators", "urgentist"),
        )
    ]


def test_the_report_clock_starts_at_images_complete() -> None:
    exam = snap(S.IMAGES_COMPLETE, images_complete_at=T0 + 1000)
    assert deadlines(exam, POLICY) == [
        Deadline("e42:report:1", T0 + 3700, 1, Reason.REPORT_WARNING, ("radiologist",)),
        Deadline(
            "e42:report:2", T0 + 4600, 2, Reason.REPORT_BREACH, ("radiologist", "coordinators")
        ),
    ]


def test_a_critical_finding_not_acknowledged_escalates_twice() -> None:
    exam = snap(S.REPORTED, reported_at=T0 + 2000, critical=True)
    assert deadlines(exam, POLICY) == [
        Deadline(
            "e42:critical:1", T0 + 2600, 1, Reason.CRITICAL_NOT_ACKNOWLEDGED, ("site_urgentists",)
        ),
        Deadline(
            "e42:critical:2", T0 + 3200, 2, Reason.CRITICAL_NOT_ACKNOWLEDGED, ("coordinators",)
        ),
    ]


@pytest.mark.parametrize(
    "exam",
    [
        snap(S.ACCEPTED, accepted_at=T0),
        snap(S.ACQUIRING, protocol_ack_at=T0),
        snap(S.REPORTED, reported_at=T0),
        snap(S.REPORTED, reported_at=T0, critical=True, critical_acknowledged=True),
        snap(S.DELIVERED, reported_at=T0, critical=True, critical_acknowledged=True),
        snap(S.CANCELLED),
    ],
)
def test_nothing_is_pending_once_the_awaited_step_is_done(exam: ExamSnapshot) -> None:
    assert deadlines(exam, POLICY) == []


def test_the_policy_delays_are_used() -> None:
    policy = Policy(ack_timeout_s=10, report_warn_s=20, report_sla_s=30, critical_ack_timeout_s=7)
    assert [d.due_at - T0 for d in deadlines(snap(S.REQUESTED), policy)] == [10, 20]
    exam = snap(S.IMAGES_COMPLETE, images_complete_at=T0)
    assert [d.due_at - T0 for d in deadlines(exam, policy)] == [20, 30]
    exam = snap(S.REPORTED, reported_at=T0, critical=True)
    assert [d.due_at - T0 for d in deadlines(exam, policy)] == [7, 14]


@pytest.mark.parametrize(
    ("status", "field"),
    [
        (S.PROTOCOLED, "protocoled_at"),
        (S.IMAGES_COMPLETE, "images_complete_at"),
        (S.REPORTED, "reported_at"),
    ],
)
def test_a_snapshot_missing_its_timestamp_is_refused(status: S, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        deadlines(snap(status, critical=True), POLICY)


def test_due_at_exact_times() -> None:
    pending = deadlines(snap(S.REQUESTED), POLICY)
    assert due(pending, T0 + 299.999) == []
    assert [d.key for d in due(pending, T0 + 300)] == ["e42:accept:1"]
    assert [d.key for d in due(pending, T0 + 599.999)] == ["e42:accept:1"]
    assert [d.key for d in due(reversed(pending), T0 + 600)] == ["e42:accept:1", "e42:accept:2"]


def test_keys_are_stable_and_cover_every_deadline() -> None:
    exams = [
        snap(S.REQUESTED),
        snap(S.PROTOCOLED, protocoled_at=T0),
        snap(S.IMAGES_COMPLETE, images_complete_at=T0),
        snap(S.REPORTED, reported_at=T0, critical=True),
    ]
    produced = [d.key for exam in exams for d in deadlines(exam, POLICY)]
    assert produced == list(deadline_keys("e42"))
    # Recomputing gives the same keys and times: rescheduling is idempotent.
    assert [deadlines(e, POLICY) for e in exams] == [deadlines(e, POLICY) for e in exams]
