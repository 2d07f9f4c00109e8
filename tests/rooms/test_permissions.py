import pytest

from rooms.lifecycle import Command, LifecycleError, decide
from rooms.permissions import commands_for, is_participant_role, may_send, visible
from rooms.types import ClientFrameType, EventKind, ExamStatus, Role

PARTICIPANTS = [Role.URGENTIST, Role.MANIPULATOR, Role.RADIOLOGIST, Role.COORDINATOR]


@pytest.mark.parametrize("role", PARTICIPANTS)
def test_every_participant_may_send_every_room_frame(role: Role) -> None:
    assert is_participant_role(role)
    assert all(may_send(role, t) for t in ClientFrameType)


def test_admin_is_not_a_room_participant() -> None:
    assert not is_participant_role(Role.ADMIN)
    assert not any(may_send(Role.ADMIN, t) for t in ClientFrameType)
    assert not any(visible(k, Role.ADMIN) for k in EventKind)


def test_report_drafts_are_seen_by_radiologists_and_coordinators_only() -> None:
    assert [r for r in PARTICIPANTS if visible(EventKind.REPORT_DRAFT, r)] == [
        Role.RADIOLOGIST,
        Role.COORDINATOR,
    ]


@pytest.mark.parametrize("kind", [k for k in EventKind if k is not EventKind.REPORT_DRAFT])
def test_every_other_event_is_seen_by_every_participant(kind: EventKind) -> None:
    assert all(visible(kind, r) for r in PARTICIPANTS)


# The lifecycle of docs/rooms.md "Exam lifecycle", written out by hand: what each
# participant may do in each status. Every pair left out offers nothing.
OFFERED: dict[tuple[Role, ExamStatus], list[str]] = {
    (Role.RADIOLOGIST, ExamStatus.REQUESTED): ["accept"],
    (Role.RADIOLOGIST, ExamStatus.ACCEPTED): ["protocol"],
    (Role.RADIOLOGIST, ExamStatus.PROTOCOLED): ["protocol"],
    (Role.RADIOLOGIST, ExamStatus.ACQUIRING): ["report_draft"],
    (Role.RADIOLOGIST, ExamStatus.IMAGES_COMPLETE): ["report_draft", "report_sign"],
    (Role.RADIOLOGIST, ExamStatus.REPORTED): ["addendum"],
    (Role.RADIOLOGIST, ExamStatus.DELIVERED): ["addendum"],
    (Role.MANIPULATOR, ExamStatus.PROTOCOLED): ["protocol_ack"],
    (Role.MANIPULATOR, ExamStatus.ACQUIRING): ["images_complete"],
    (Role.URGENTIST, ExamStatus.REPORTED): ["acknowledge"],
    **{
        (role, status): ["cancel"]
        for role in (Role.URGENTIST, Role.COORDINATOR)
        for status in (
            ExamStatus.REQUESTED,
            ExamStatus.ACCEPTED,
            ExamStatus.PROTOCOLED,
            ExamStatus.ACQUIRING,
            ExamStatus.IMAGES_COMPLETE,
        )
    },
}


@pytest.mark.parametrize("status", list(ExamStatus))
@pytest.mark.parametrize("role", list(Role))
def test_commands_offered_are_the_lifecycle_table(role: Role, status: ExamStatus) -> None:
    assert commands_for(role, status) == OFFERED.get((role, status), [])
    assert commands_for(role.value, status.value) == commands_for(role, status)


@pytest.mark.parametrize("status", list(ExamStatus))
@pytest.mark.parametrize("role", list(Role))
def test_commands_offered_are_those_the_state_machine_accepts(
    role: Role, status: ExamStatus
) -> None:
    offered = commands_for(role, status)
    for command in Command:
        if command in offered:
            decide(status, command, role)  # accepted: raises nothing
        else:
            with pytest.raises(LifecycleError):
                decide(status, command, role)


def test_no_command_for_a_name_nobody_holds() -> None:
    assert commands_for("system", ExamStatus.REQUESTED) == []
    assert commands_for(Role.RADIOLOGIST, "archived") == []
