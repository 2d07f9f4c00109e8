"""Who may send which frames in a room, and who may see which events.

Whether a user is a participant of a given exam (same establishment, assigned
radiologist, coordinator...) needs the database and is the server's decision; this
module answers what a participant of a given role may do once inside.

`admin` administers establishments, users and settings and has no clinical access, so
it is not a room participant: least privilege for patient data.
"""

from __future__ import annotations

from rooms.lifecycle import Command, available_commands
from rooms.types import ClientFrameType, EventKind, ExamStatus, Role

PARTICIPANT_ROLES: frozenset[Role] = frozenset(
    {Role.URGENTIST, Role.MANIPULATOR, Role.RADIOLOGIST, Role.COORDINATOR}
)

# Every participant may talk, show typing, keep alive and join the call: clinical
# conversation is between all the people caring for the patient.
SENDABLE: dict[Role, frozenset[ClientFrameType]] = {
    role: frozenset(ClientFrameType) for role in PARTICIPANT_ROLES
}

# A draft may change before signature; site staff must only ever act on a signed
# report, so drafts stay with the reading side (radiologists) and operations.
RESTRICTED_KINDS: dict[EventKind, frozenset[Role]] = {
    EventKind.REPORT_DRAFT: frozenset({Role.RADIOLOGIST, Role.COORDINATOR}),
}


def is_participant_role(role: Role) -> bool:
    """Whether users of this role can take part in exam rooms at all."""
    return role in PARTICIPANT_ROLES


def may_send(role: Role, frame_type: ClientFrameType) -> bool:
    """Whether a participant of this role may send this frame type in a room."""
    return frame_type in SENDABLE.get(role, frozenset())


def visible(kind: EventKind, role: Role) -> bool:
    """Whether a participant of this role may see events of this kind (live or replayed)."""
    if role not in PARTICIPANT_ROLES:
        return False
    allowed = RESTRICTED_KINDS.get(kind)
    return allowed is None or role in allowed


def commands_for(role: Role | str, status: ExamStatus | str) -> list[Command]:
    """The lifecycle commands a participant of this role may issue on an exam in this
    status, in lifecycle order: what the exam JSON lists as ``commands`` and the
    browser renders as buttons (docs/rooms.md "The exam object").

    Exactly the commands `rooms.lifecycle.decide` accepts for this role and status;
    a role outside the rooms (admin, or a name no user holds) gets none. Whether the
    exam is the caller's at all is the server's scope check, made before this.
    """
    try:
        who, where = Role(role), ExamStatus(status)
    except ValueError:
        return []
    if not is_participant_role(who):
        return []
    return available_commands(where, who)
