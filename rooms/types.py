"""Wire types of the exam room, in one place (docs/rooms.md, docs/api.md "Exam room").

Everything that crosses the WebSocket or the event log is named here so that the
server, the worker, the test client and the docs agree on a single spelling.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict


class Role(StrEnum):
    """Who a user is in the product (docs/design.md "Tenancy and roles")."""

    URGENTIST = "urgentist"
    MANIPULATOR = "manipulator"
    RADIOLOGIST = "radiologist"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class ExamStatus(StrEnum):
    """Where an exam is in its lifecycle; transitions live in `rooms.lifecycle`."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    PROTOCOLED = "protocoled"
    ACQUIRING = "acquiring"
    IMAGES_COMPLETE = "images_complete"
    REPORTED = "reported"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class EventKind(StrEnum):
    """The persisted event kinds of docs/api.md "Exam room", exactly.

    Ephemeral signals are not events.
    """

    EXAM_REQUESTED = "exam.requested"
    EXAM_ACCEPTED = "exam.accepted"
    PROTOCOL_PROPOSED = "protocol.proposed"
    PROTOCOL_ACKNOWLEDGED = "protocol.acknowledged"
    IMAGES_RECEIVED = "images.received"
    EXAM_IMAGES_COMPLETE = "exam.images_complete"
    REPORT_DRAFT = "report.draft"
    REPORT_SIGNED = "report.signed"
    REPORT_ADDENDUM = "report.addendum"
    EXAM_DELIVERED = "exam.delivered"
    EXAM_CANCELLED = "exam.cancelled"
    ESCALATION_RAISED = "escalation.raised"
    CHAT_MESSAGE = "chat.message"
    CALL_STARTED = "call.started"
    CALL_ENDED = "call.ended"
    PATIENT_UPDATED = "patient.updated"
    PATIENT_MERGED = "patient.merged"
    CRITICAL_COMMUNICATED = "critical.communicated"
    PRIOR_RETRIEVAL = "prior.retrieval"


# Whether an event of each kind can move the exam's escalation deadlines: whether
# it changes what `rooms.escalation.deadlines` reads (the exam's status and times,
# the signed report's critical flag). Declared for every kind, here with the kinds;
# after an event that may move them the server re-plans the exam's timers from SQL.
# A kind missing here, or one said not to move a deadline whose command does, fails
# the tests (tests/rooms/test_types.py, tests/exams/test_replan.py).
MOVES_DEADLINES: dict[EventKind, bool] = {
    EventKind.EXAM_REQUESTED: True,  # the accept deadlines start
    EventKind.EXAM_ACCEPTED: True,
    EventKind.PROTOCOL_PROPOSED: True,  # a revision restarts the acknowledgement clock
    EventKind.PROTOCOL_ACKNOWLEDGED: True,
    EventKind.IMAGES_RECEIVED: False,  # the status waits for images_complete
    EventKind.EXAM_IMAGES_COMPLETE: True,
    EventKind.REPORT_DRAFT: False,  # the status stays, no time is set
    EventKind.REPORT_SIGNED: True,
    EventKind.REPORT_ADDENDUM: False,  # the signed report's time and flag stay
    EventKind.EXAM_DELIVERED: True,
    EventKind.EXAM_CANCELLED: True,
    # Raised when its timer was claimed from the engine; the next level is scheduled.
    EventKind.ESCALATION_RAISED: False,
    EventKind.CHAT_MESSAGE: False,
    EventKind.CALL_STARTED: False,
    EventKind.CALL_ENDED: False,
    # The patient's identity changed or was merged: the exam's times stay.
    EventKind.PATIENT_UPDATED: False,
    EventKind.PATIENT_MERGED: False,
    # The critical-result record completed by a phone call: its escalation stops.
    EventKind.CRITICAL_COMMUNICATED: True,
    # A prior fetched from the hospital's PACS (docs/priors.md): nothing of the exam's.
    EventKind.PRIOR_RETRIEVAL: False,
}


def moves_deadlines(kind: str) -> bool:
    """Whether an event of ``kind`` may move its exam's escalation deadlines; a
    kind this module does not know may (re-planning costs a query, never a timer)."""
    try:
        return MOVES_DEADLINES.get(EventKind(kind), True)
    except ValueError:
        return True


class ClientFrameType(StrEnum):
    """The `type` of the frames a client may send in a room."""

    CHAT = "chat"
    TYPING = "typing"
    PING = "ping"
    CALL_OFFER = "call.offer"
    CALL_ANSWER = "call.answer"
    CALL_ICE = "call.ice"
    CALL_MUTE = "call.mute"
    CALL_HANGUP = "call.hangup"


class ErrorCode(StrEnum):
    """Codes of `error` frames; the socket stays open after any of them.

    A StrEnum so that `ErrorCode.BAD_JSON == "bad_json"` and the value goes on the wire
    unchanged.
    """

    FRAME_TOO_LARGE = "frame_too_large"
    BAD_ENCODING = "bad_encoding"
    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_ID = "missing_id"
    ID_TOO_LONG = "id_too_long"
    MISSING_TEXT = "missing_text"
    TEXT_TOO_LONG = "text_too_long"
    MISSING_SDP = "missing_sdp"
    MISSING_CANDIDATE = "missing_candidate"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN_KIND = "forbidden_kind"
    SLOW_CONSUMER = "slow_consumer"
    BAD_MUTE = "bad_mute"
    CALL_FULL = "call_full"
    NOT_IN_CALL = "not_in_call"
    CALL_FAILED = "call_failed"
    CALL_GLARE = "call_glare"
    CALL_LOST = "call_lost"  # the process holding the call stopped (docs/calls.md)
    NOT_STORED = "not_stored"  # the database refused or failed: nothing was stored, send again


class CloseCode:
    """WebSocket close codes of the server (RFC 6455 7.4.2: 4000-4999 are the
    application's; docs/rooms.md "Closing"). The HTTP status they echo is the one
    the same refusal gets over HTTP."""

    SESSION_ENDED = 4401  # not authenticated, or the session ended while open
    FORBIDDEN = 4403  # not a participant, or no longer one (the exam went to another)
    NO_SUCH_EXAM = 4404
    SLOW_CONSUMER = 4408


class Event(TypedDict):
    """One persisted room event; `seq` is the per-exam sequence number (from 1)."""

    seq: int
    id: str
    kind: EventKind
    author: dict[str, Any] | None
    at: str
    body: dict[str, Any]


class PresenceEntry(TypedDict):
    """One person in the room, as shown to the others."""

    user: dict[str, Any]
    role: Role
    since: str


class WelcomeFrame(TypedDict):
    """First frame after the upgrade: the exam, the caller, who is here, the last seq."""

    type: Literal["welcome"]
    exam: dict[str, Any]
    you: dict[str, Any]
    presence: list[PresenceEntry]
    last_seq: int
    # True when the client's ``since`` is beyond ``last_seq`` (the database was
    # restored from a backup): it forgets what it holds; the replay starts at 1.
    reset: NotRequired[bool]


class AccessLostFrame(TypedDict):
    """Sent just before a close with ``CloseCode.FORBIDDEN`` when another
    radiologist took the exam: who took it (docs/rooms.md "Closing")."""

    type: Literal["access.lost"]
    reason: Literal["taken"]
    by: dict[str, Any] | None


class EventFrame(TypedDict):
    type: Literal["event"]
    event: Event


class AckFrame(TypedDict):
    """Answers a client frame that carried an `id`, with the seq it was stored under."""

    type: Literal["ack"]
    id: str
    seq: int


class PresenceFrame(TypedDict):
    type: Literal["presence"]
    presence: list[PresenceEntry]


class ErrorFrame(TypedDict):
    """A refused frame; `id` echoes the client id when the frame had a usable one."""

    type: Literal["error"]
    code: ErrorCode
    message: str
    id: NotRequired[str]


class PongFrame(TypedDict):
    type: Literal["pong"]


class CallAnswerFrame(TypedDict):
    """The server-side WebRTC peer's answer to a `call.offer`."""

    type: Literal["call.answer"]
    sdp: str


class CallTrack(TypedDict):
    """Which m-line (`mid`) of a server offer carries whose media."""

    mid: str
    kind: Literal["audio", "video"]
    user: dict[str, Any]


class CallOfferFrame(TypedDict):
    """A server-initiated renegotiation (docs/calls.md); the client answers `call.answer`."""

    type: Literal["call.offer"]
    sdp: str
    tracks: list[CallTrack]


class CallParticipant(TypedDict):
    user: dict[str, Any]
    role: Role
    muted: bool
    video: bool


class CallStateFrame(TypedDict):
    """Who is in the exam's call now (ephemeral, to the whole room)."""

    type: Literal["call.state"]
    participants: list[CallParticipant]
    recording: bool


ServerFrame = (
    WelcomeFrame
    | EventFrame
    | AckFrame
    | PresenceFrame
    | ErrorFrame
    | PongFrame
    | CallAnswerFrame
    | CallOfferFrame
    | CallStateFrame
    | AccessLostFrame
)


def error_frame(code: ErrorCode, message: str, id: str | None = None) -> ErrorFrame:
    """Build an `error` frame, leaving `id` out rather than sending null."""
    frame = ErrorFrame(type="error", code=code, message=message)
    if id is not None:
        frame["id"] = id
    return frame
