from rooms.lifecycle import RULES
from rooms.types import (
    MOVES_DEADLINES,
    ErrorCode,
    EventKind,
    ExamStatus,
    Role,
    error_frame,
    moves_deadlines,
)


def test_event_kinds_are_exactly_the_persisted_kinds_of_the_api() -> None:
    assert [k.value for k in EventKind] == [
        "exam.requested",
        "exam.accepted",
        "protocol.proposed",
        "protocol.acknowledged",
        "images.received",
        "exam.images_complete",
        "report.draft",
        "report.signed",
        "report.addendum",
        "exam.delivered",
        "exam.cancelled",
        "escalation.raised",
        "chat.message",
        "call.started",
        "call.ended",
        "patient.updated",
        "patient.merged",
        "critical.communicated",
        "prior.retrieval",
    ]


def test_roles_and_statuses_spell_the_wire_values() -> None:
    assert [r.value for r in Role] == [
        "urgentist",
        "manipulator",
        "radiologist",
        "coordinator",
        "admin",
    ]
    assert [s.value for s in ExamStatus] == [
        "requested",
        "accepted",
        "protocoled",
        "acquiring",
        "images_complete",
        "reported",
        "delivered",
        "cancelled",
    ]


def test_error_frame_leaves_out_a_missing_id() -> None:
    assert error_frame(ErrorCode.BAD_JSON, "nope") == {
        "type": "error",
        "code": "bad_json",
        "message": "nope",
    }
    assert error_frame(ErrorCode.TEXT_TOO_LONG, "long", "c1")["id"] == "c1"


def test_every_event_kind_says_whether_it_moves_deadlines() -> None:
    """A new kind cannot be added without saying whether it re-plans the timers."""
    assert list(MOVES_DEADLINES) == list(EventKind)


def test_a_kind_whose_command_changes_the_status_moves_deadlines() -> None:
    """The escalation policy reads the status: a command that changes it re-plans."""
    for command, rule in RULES.items():
        if any(before != after for before, after in rule.moves.items()):
            assert MOVES_DEADLINES[rule.event_kind], command
    assert moves_deadlines("some.future.kind")  # unknown: re-plan, never skip
