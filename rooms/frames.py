"""Sans-I/O parsing of the frames a client sends in a room (docs/api.md "Exam room").

Bytes or text in, a typed frame or a `FrameError` out: the WebSocket handler turns a
FrameError into an `error` frame and keeps the connection, so one bad frame never
takes the room down. Unknown extra fields are ignored so that newer clients can talk
to older servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rooms import strictjson
from rooms.types import ClientFrameType, ErrorCode

MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 8000
# Strings no database can store are an encoding fault; the rest of what strict JSON
# refuses (NaN, huge numbers, deep nesting) is not JSON the room can use.
_ENCODING = frozenset({"nul_character", "bad_encoding"})


class FrameError(Exception):
    """A refused frame: `code` goes on the wire, `id` echoes the client id if usable."""

    def __init__(self, code: ErrorCode, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


@dataclass(frozen=True)
class ChatFrame:
    """A chat message; `id` is client-generated so that a retry is stored once."""

    type: ClassVar[ClientFrameType] = ClientFrameType.CHAT
    id: str
    text: str


@dataclass(frozen=True)
class TypingFrame:
    type: ClassVar[ClientFrameType] = ClientFrameType.TYPING


@dataclass(frozen=True)
class PingFrame:
    type: ClassVar[ClientFrameType] = ClientFrameType.PING


@dataclass(frozen=True)
class CallOfferFrame:
    """A WebRTC offer (RFC 8829 JSEP) for the server-side peer."""

    type: ClassVar[ClientFrameType] = ClientFrameType.CALL_OFFER
    sdp: str


@dataclass(frozen=True)
class CallAnswerFrame:
    """The client's answer to a server-initiated `call.offer` (renegotiation, docs/calls.md)."""

    type: ClassVar[ClientFrameType] = ClientFrameType.CALL_ANSWER
    sdp: str


@dataclass(frozen=True)
class CallMuteFrame:
    """What the client sends right now: the server only shows it to the others."""

    type: ClassVar[ClientFrameType] = ClientFrameType.CALL_MUTE
    audio: bool
    video: bool


@dataclass(frozen=True)
class CallIceFrame:
    """A trickled ICE candidate (RFC 8838), as the browser's RTCIceCandidateInit object."""

    type: ClassVar[ClientFrameType] = ClientFrameType.CALL_ICE
    candidate: dict[str, Any]


@dataclass(frozen=True)
class CallHangupFrame:
    type: ClassVar[ClientFrameType] = ClientFrameType.CALL_HANGUP


ClientFrame = (
    ChatFrame
    | TypingFrame
    | PingFrame
    | CallOfferFrame
    | CallAnswerFrame
    | CallIceFrame
    | CallMuteFrame
    | CallHangupFrame
)


def _decode(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Size, encoding, syntax and shape checks, cheapest first."""
    too_large = FrameError(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {max_bytes} bytes")
    bad_encoding = FrameError(ErrorCode.BAD_ENCODING, "frames must be valid UTF-8 text")
    # A str has at most as many characters as its UTF-8 encoding has bytes, so a long
    # str is rejected before paying for its encoding.
    if len(raw) > max_bytes:
        raise too_large
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
    except UnicodeError:
        raise bad_encoding from None
    if size > max_bytes:
        raise too_large
    try:
        # NaN, huge integers, deep nesting, NUL and lone surrogates (even JSON-escaped,
        # "\\u0000", "\\ud800") are refused here: no database or peer could take them.
        data = strictjson.loads(text)
    except strictjson.JsonRefused as exc:
        code = ErrorCode.BAD_ENCODING if exc.code in _ENCODING else ErrorCode.BAD_JSON
        raise FrameError(code, f"the frame is refused: {exc.message}") from None
    if not isinstance(data, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
    return data


def _chat(data: dict[str, Any]) -> ChatFrame:
    id_ = data.get("id")
    if not isinstance(id_, str) or not id_:
        raise FrameError(ErrorCode.MISSING_ID, "a chat message needs a string id")
    if len(id_) > MAX_ID_CHARS:
        raise FrameError(ErrorCode.ID_TOO_LONG, f"ids are limited to {MAX_ID_CHARS} characters")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FrameError(ErrorCode.MISSING_TEXT, "a chat message needs some text", id_)
    if len(text) > MAX_TEXT_CHARS:
        raise FrameError(
            ErrorCode.TEXT_TOO_LONG, f"messages are limited to {MAX_TEXT_CHARS} characters", id_
        )
    return ChatFrame(id=id_, text=text)


def _call_offer(data: dict[str, Any]) -> CallOfferFrame:
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise FrameError(ErrorCode.MISSING_SDP, "call.offer needs an sdp string")
    return CallOfferFrame(sdp=sdp)


def _call_answer(data: dict[str, Any]) -> CallAnswerFrame:
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise FrameError(ErrorCode.MISSING_SDP, "call.answer needs an sdp string")
    return CallAnswerFrame(sdp=sdp)


def _call_mute(data: dict[str, Any]) -> CallMuteFrame:
    audio, video = data.get("audio"), data.get("video")
    if not isinstance(audio, bool) or not isinstance(video, bool):
        raise FrameError(ErrorCode.BAD_MUTE, "call.mute needs booleans audio and video")
    return CallMuteFrame(audio=audio, video=video)


def _call_ice(data: dict[str, Any]) -> CallIceFrame:
    candidate = data.get("candidate")
    if not isinstance(candidate, dict):
        raise FrameError(ErrorCode.MISSING_CANDIDATE, "call.ice needs a candidate object")
    return CallIceFrame(candidate=candidate)


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientFrame]] = {
    ClientFrameType.CHAT: _chat,
    ClientFrameType.TYPING: lambda _: TypingFrame(),
    ClientFrameType.PING: lambda _: PingFrame(),
    ClientFrameType.CALL_OFFER: _call_offer,
    ClientFrameType.CALL_ANSWER: _call_answer,
    ClientFrameType.CALL_ICE: _call_ice,
    ClientFrameType.CALL_MUTE: _call_mute,
    ClientFrameType.CALL_HANGUP: lambda _: CallHangupFrame(),
}


def parse_client_frame(raw: str | bytes, max_bytes: int) -> ClientFrame:
    """Parse one client frame or raise FrameError naming what is wrong."""
    data = _decode(raw, max_bytes)
    kind = data.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        allowed = ", ".join(_PARSERS)
        raise FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type; expected one of {allowed}")
    return parser(data)
