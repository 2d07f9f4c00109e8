import itertools

import pytest

from rooms.lifecycle import (
    Command,
    IllegalTransition,
    RoleNotAllowed,
    Transition,
    available_commands,
    decide,
    event_kind,
    is_open,
    sources,
)
from rooms.types import EventKind, ExamStatus, Role

C, S, R, K = Command, ExamStatus, Role, EventKind

# The lifecycle of docs/rooms.md "Exam lifecycle", written out independently of the
# module under test: (command, from) -> to.
MOVES = {
    (C.ACCEPT, S.REQUESTED): S.ACCEPTED,
    (C.PROTOCOL, S.ACCEPTED): S.PROTOCOLED,
    (C.PROTOCOL, S.PROTOCOLED): S.PROTOCOLED,
    (C.PROTOCOL_ACK, S.PROTOCOLED): S.ACQUIRING,
    (C.IMAGES_COMPLETE, S.ACQUIRING): S.IMAGES_COMPLETE,
    (C.REPORT_DRAFT, S.ACQUIRING): S.ACQUIRING,
    (C.REPORT_DRAFT, S.IMAGES_COMPLETE): S.IMAGES_COMPLETE,
    (C.REPORT_SIGN, S.IMAGES_COMPLETE): S.REPORTED,
    (C.ACKNOWLEDGE, S.REPORTED): S.DELIVERED,
    (C.ADDENDUM, S.REPORTED): S.REPORTED,
    (C.ADDENDUM, S.DELIVERED): S.DELIVERED,
    (C.CANCEL, S.REQUESTED): S.CANCELLED,
    (C.CANCEL, S.ACCEPTED): S.CANCELLED,
    (C.CANCEL, S.PROTOCOLED): S.CANCELLED,
    (C.CANCEL, S.ACQUIRING): S.CANCELLED,
    (C.CANCEL, S.IMAGES_COMPLETE): S.CANCELLED,
}
ROLES = {
    C.ACCEPT: {R.RADIOLOGIST},
    C.PROTOCOL: {R.RADIOLOGIST},
    C.PROTOCOL_ACK: {R.MANIPULATOR},
    C.IMAGES_COMPLETE: {R.MANIPULATOR},
    C.REPORT_DRAFT: {R.RADIOLOGIST},
    C.REPORT_SIGN: {R.RADIOLOGIST},
    C.ADDENDUM: {R.RADIOLOGIST},
    C.ACKNOWLEDGE: {R.URGENTIST},
    C.CANCEL: {R.URGENTIST, R.COORDINATOR},
}
KINDS = {
    C.ACCEPT: K.EXAM_ACCEPTED,
    C.PROTOCOL: K.PROTOCOL_PROPOSED,
    C.PROTOCOL_ACK: K.PROTOCOL_ACKNOWLEDGED,
    C.IMAGES_COMPLETE: K.EXAM_IMAGES_COMPLETE,
    C.REPORT_DRAFT: K.REPORT_DRAFT,
    C.REPORT_SIGN: K.REPORT_SIGNED,
    C.ADDENDUM: K.REPORT_ADDENDUM,
    C.ACKNOWLEDGE: K.EXAM_DELIVERED,
    C.CANCEL: K.EXAM_CANCELLED,
}
ALL = list(itertools.product(Command, ExamStatus, Role))


@pytest.mark.parametrize(
    ("command", "status", "role"),
    [(c, s, r) for c, s, r in ALL if (c, s) in MOVES and r in ROLES[c]],
)
def test_every_allowed_transition(command: Command, status: ExamStatus, role: Role) -> None:
    assert decide(status, command, role) == Transition(MOVES[command, status], KINDS[command])


@pytest.mark.parametrize(
    ("command", "status", "role"),
    [(c, s, r) for c, s, r in ALL if (c, s) not in MOVES and r in ROLES[c]],
)
def test_every_forbidden_transition_is_a_409(
    command: Command, status: ExamStatus, role: Role
) -> None:
    with pytest.raises(IllegalTransition) as info:
        decide(status, command, role)
    error = info.value
    assert error.http_status == 409
    assert error.status is status and error.command is command
    assert set(error.expected) == {s for c, s in MOVES if c is command}
    # The message names the current situation and every status that would do.
    assert all(s.value in str(error) for s in error.expected)


@pytest.mark.parametrize(
    ("command", "status", "role"), [(c, s, r) for c, s, r in ALL if r not in ROLES[c]]
)
def test_every_wrong_role_is_a_403_whatever_the_status(
    command: Command, status: ExamStatus, role: Role
) -> None:
    with pytest.raises(RoleNotAllowed) as info:
        decide(status, command, role)
    assert info.value.http_status == 403
    assert set(info.value.allowed) == ROLES[command]
    assert str(info.value).startswith(f"a{'n' if role.value[0] in 'aeiou' else ''} {role}")


def test_messages_read_as_sentences() -> None:
    with pytest.raises(IllegalTransition, match="^cannot accept the exam: the exam is accepted"):
        decide(S.ACCEPTED, C.ACCEPT, R.RADIOLOGIST)
    with pytest.raises(IllegalTransition, match="already reported.*requested or accepted"):
        decide(S.REPORTED, C.CANCEL, R.URGENTIST)
    with pytest.raises(RoleNotAllowed, match="^a radiologist cannot cancel the exam; only an "):
        decide(S.REQUESTED, C.CANCEL, R.RADIOLOGIST)


def test_event_kind_of_each_command() -> None:
    assert {c: event_kind(c) for c in Command} == KINDS


def test_available_commands_are_the_allowed_moves() -> None:
    for status, role in itertools.product(ExamStatus, Role):
        expected = [c for c in Command if (c, status) in MOVES and role in ROLES[c]]
        assert available_commands(status, role) == expected
    assert available_commands(S.IMAGES_COMPLETE, R.RADIOLOGIST) == [C.REPORT_DRAFT, C.REPORT_SIGN]


def test_an_exam_is_open_until_reported() -> None:
    assert [s for s in ExamStatus if is_open(s)] == [
        S.REQUESTED,
        S.ACCEPTED,
        S.PROTOCOLED,
        S.ACQUIRING,
        S.IMAGES_COMPLETE,
    ]


def test_sources_are_the_statuses_leading_to_the_same_place() -> None:
    assert sources(Command.PROTOCOL, S.PROTOCOLED) == (S.ACCEPTED, S.PROTOCOLED)
    assert sources(Command.ACCEPT, S.ACCEPTED) == (S.REQUESTED,)
    assert sources(Command.ADDENDUM, S.REPORTED) == (S.REPORTED,)
    assert len(sources(Command.CANCEL, S.CANCELLED)) == 5
