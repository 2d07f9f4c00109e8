import pytest

from rooms.permissions import is_participant_role, may_send, visible
from rooms.types import ClientFrameType, EventKind, Role

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
