"""The exam state machine (docs/rooms.md "Exam lifecycle"), as pure code.

Every HTTP command on an exam goes through `decide()` before anything is written, so
the rules live here once: which role may issue a command, from which statuses, what
status follows and which event kind is persisted. The role is checked before the
status so that a user who may not act on an exam learns nothing about its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rooms.types import EventKind, ExamStatus, Role

S = ExamStatus


class Command(StrEnum):
    """What a user asks to do to an exam (one per state-changing HTTP route)."""

    ACCEPT = "accept"
    PROTOCOL = "protocol"
    PROTOCOL_ACK = "protocol_ack"
    IMAGES_COMPLETE = "images_complete"
    REPORT_DRAFT = "report_draft"
    REPORT_SIGN = "report_sign"
    ADDENDUM = "addendum"
    ACKNOWLEDGE = "acknowledge"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Rule:
    """Who may issue a command, the statuses it applies to (from -> to), what it writes."""

    roles: frozenset[Role]
    moves: dict[ExamStatus, ExamStatus]
    event_kind: EventKind
    phrase: str  # "accept the exam": completes "cannot ..." in error messages


_BEFORE_REPORTED = (S.REQUESTED, S.ACCEPTED, S.PROTOCOLED, S.ACQUIRING, S.IMAGES_COMPLETE)

RULES: dict[Command, Rule] = {
    Command.ACCEPT: Rule(
        frozenset({Role.RADIOLOGIST}),
        {S.REQUESTED: S.ACCEPTED},
        EventKind.EXAM_ACCEPTED,
        "accept the exam",
    ),
    Command.PROTOCOL: Rule(
        frozenset({Role.RADIOLOGIST}),
        # Sending a protocol again before acquisition starts is a revision.
        {S.ACCEPTED: S.PROTOCOLED, S.PROTOCOLED: S.PROTOCOLED},
        EventKind.PROTOCOL_PROPOSED,
        "send a protocol",
    ),
    Command.PROTOCOL_ACK: Rule(
        frozenset({Role.MANIPULATOR}),
        {S.PROTOCOLED: S.ACQUIRING},
        EventKind.PROTOCOL_ACKNOWLEDGED,
        "acknowledge the protocol",
    ),
    Command.IMAGES_COMPLETE: Rule(
        frozenset({Role.MANIPULATOR}),
        {S.ACQUIRING: S.IMAGES_COMPLETE},
        EventKind.EXAM_IMAGES_COMPLETE,
        "mark the acquisition complete",
    ),
    Command.REPORT_DRAFT: Rule(
        frozenset({Role.RADIOLOGIST}),
        # Reading starts with the first images, before the acquisition is complete.
        {S.ACQUIRING: S.ACQUIRING, S.IMAGES_COMPLETE: S.IMAGES_COMPLETE},
        EventKind.REPORT_DRAFT,
        "save a report draft",
    ),
    Command.REPORT_SIGN: Rule(
        frozenset({Role.RADIOLOGIST}),
        {S.IMAGES_COMPLETE: S.REPORTED},
        EventKind.REPORT_SIGNED,
        "sign the report",
    ),
    Command.ADDENDUM: Rule(
        frozenset({Role.RADIOLOGIST}),
        # A signed report is immutable: corrections are addenda, even after delivery.
        {S.REPORTED: S.REPORTED, S.DELIVERED: S.DELIVERED},
        EventKind.REPORT_ADDENDUM,
        "add an addendum",
    ),
    Command.ACKNOWLEDGE: Rule(
        frozenset({Role.URGENTIST}),
        {S.REPORTED: S.DELIVERED},
        EventKind.EXAM_DELIVERED,
        "acknowledge the report",
    ),
    Command.CANCEL: Rule(
        frozenset({Role.URGENTIST, Role.COORDINATOR}),
        dict.fromkeys(_BEFORE_REPORTED, S.CANCELLED),
        EventKind.EXAM_CANCELLED,
        "cancel the exam",
    ),
}

# How each status reads in a sentence a clinician sees ("the exam is ...").
STATUS_PHRASES: dict[ExamStatus, str] = {
    S.REQUESTED: "requested and not yet accepted",
    S.ACCEPTED: "accepted and waiting for its protocol",
    S.PROTOCOLED: "protocoled and waiting for the radiographer to acknowledge the protocol",
    S.ACQUIRING: "being acquired",
    S.IMAGES_COMPLETE: "acquired and waiting for its report",
    S.REPORTED: "already reported (the report is signed)",
    S.DELIVERED: "already delivered",
    S.CANCELLED: "cancelled",
}


def _a(role: Role) -> str:
    return f"{'an' if role.value[0] in 'aeiou' else 'a'} {role.value}"


class LifecycleError(Exception):
    """A command refused by the lifecycle; `http_status` is what the API answers."""

    http_status: int = 400


class IllegalTransition(LifecycleError):
    """The command does not fit the exam's current status (HTTP 409, nothing changes)."""

    http_status = 409

    def __init__(self, status: ExamStatus, command: Command) -> None:
        rule = RULES[command]
        self.status = status
        self.command = command
        self.expected: tuple[ExamStatus, ...] = tuple(rule.moves)
        expected = " or ".join(s.value for s in self.expected)
        super().__init__(
            f"cannot {rule.phrase}: the exam is {STATUS_PHRASES[status]}; "
            f"this is only possible when it is {expected}"
        )


class RoleNotAllowed(LifecycleError):
    """The caller's role may never issue this command (HTTP 403)."""

    http_status = 403

    def __init__(self, role: Role, command: Command) -> None:
        rule = RULES[command]
        self.role = role
        self.command = command
        self.allowed: tuple[Role, ...] = tuple(r for r in Role if r in rule.roles)
        allowed = " or ".join(_a(r) for r in self.allowed)
        super().__init__(f"{_a(role)} cannot {rule.phrase}; only {allowed} can")


@dataclass(frozen=True)
class Transition:
    """The outcome of an accepted command: the status to store and the event to append."""

    new_status: ExamStatus
    event_kind: EventKind


def decide(status: ExamStatus, command: Command, role: Role) -> Transition:
    """Check a command against the rules; raise rather than return a no-op.

    Raises RoleNotAllowed (403) first, then IllegalTransition (409).
    """
    rule = RULES[command]
    if role not in rule.roles:
        raise RoleNotAllowed(role, command)
    if status not in rule.moves:
        raise IllegalTransition(status, command)
    return Transition(rule.moves[status], rule.event_kind)


def sources(command: Command, new_status: ExamStatus) -> tuple[ExamStatus, ...]:
    """Every status from which `command` leads to `new_status`.

    A writer checks the status it read is still one of these when it commits, so a
    command stays valid across a concurrent change that leads to the same place (two
    protocol revisions racing) and fails across one that does not (accept vs cancel).
    """
    return tuple(s for s, to in RULES[command].moves.items() if to == new_status)


def event_kind(command: Command) -> EventKind:
    """The event kind a command writes to the exam's log."""
    return RULES[command].event_kind


def available_commands(status: ExamStatus, role: Role) -> list[Command]:
    """Commands this role may issue now, in lifecycle order: the buttons a UI shows."""
    return [c for c, rule in RULES.items() if role in rule.roles and status in rule.moves]


def is_open(status: ExamStatus) -> bool:
    """Whether the exam can still be cancelled (it has not been reported yet)."""
    return status in _BEFORE_REPORTED
