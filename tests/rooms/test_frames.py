import json

import pytest

from rooms.frames import (
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    CallHangupFrame,
    CallIceFrame,
    CallOfferFrame,
    ChatFrame,
    FrameError,
    PingFrame,
    TypingFrame,
    parse_client_frame,
)
from rooms.types import ClientFrameType, ErrorCode

MAX = 65536


def parse(frame: object, max_bytes: int = MAX) -> object:
    return parse_client_frame(json.dumps(frame), max_bytes)


def refused(raw: str | bytes, max_bytes: int = MAX) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_client_frame(raw, max_bytes)
    return info.value


def test_valid_frames_of_every_type() -> None:
    assert parse({"type": "chat", "id": "c1", "text": "Hémorragie ?"}) == ChatFrame(
        id="c1", text="Hémorragie ?"
    )
    assert parse({"type": "typing"}) == TypingFrame()
    assert parse({"type": "ping"}) == PingFrame()
    assert parse({"type": "call.offer", "sdp": "v=0\r\n"}) == CallOfferFrame(sdp="v=0\r\n")
    candidate = {"candidate": "candidate:1 1 udp 1 10.0.0.1 5000 typ host", "sdpMid": "0"}
    assert parse({"type": "call.ice", "candidate": candidate}) == CallIceFrame(candidate)
    assert parse({"type": "call.hangup"}) == CallHangupFrame()
    assert (TypingFrame.type, ChatFrame.type) == (ClientFrameType.TYPING, ClientFrameType.CHAT)


def test_bytes_and_extra_fields_are_accepted() -> None:
    raw = json.dumps({"type": "chat", "id": "c", "text": "é", "v": 2}).encode()
    assert parse_client_frame(raw, MAX) == ChatFrame(id="c", text="é")


def test_limits_are_inclusive() -> None:
    frame = {"type": "chat", "id": "i" * MAX_ID_CHARS, "text": "t" * MAX_TEXT_CHARS}
    raw = json.dumps(frame)
    assert parse_client_frame(raw, len(raw)) == ChatFrame(**{k: frame[k] for k in ("id", "text")})


@pytest.mark.parametrize("raw", ['{"type": "ping"}' + " " * 100, b'{"type": "ping"}' + b" " * 100])
def test_frame_too_large(raw: str | bytes) -> None:
    assert refused(raw, max_bytes=100).code == ErrorCode.FRAME_TOO_LARGE


def test_frame_too_large_counts_utf8_bytes_not_characters() -> None:
    raw = json.dumps({"type": "chat", "id": "c", "text": "é" * 40}, ensure_ascii=False)
    assert len(raw) <= 100 < len(raw.encode())
    assert refused(raw, max_bytes=100).code == ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "chat", "id": "c", "text": "\xff"}',
        '{"type": "chat", "id": "c", "text": "\ud800"}',  # a str no UTF-8 can carry
        '{"type": "chat", "id": "c", "text": "\\ud800"}',  # a lone surrogate, JSON-escaped
        '{"type": "call.ice", "candidate": {"x": ["\\udfff"]}}',
    ],
)
def test_not_utf8(raw: str | bytes) -> None:
    assert refused(raw).code == ErrorCode.BAD_ENCODING


def test_escaped_surrogate_pairs_are_fine() -> None:
    raw = '{"type": "chat", "id": "c", "text": "\\ud83e\\ude7b"}'
    assert parse_client_frame(raw, MAX) == ChatFrame(id="c", text="\U0001fa7b")


@pytest.mark.parametrize(
    "raw", ["", "{", "{'type': 'ping'}", '{"type": "ping"} x', "NaN", '{"x": Infinity}', "[" * 5000]
)
def test_not_json(raw: str) -> None:
    assert refused(raw).code == ErrorCode.BAD_JSON


def test_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    raw = "[" * 100_000 + "]" * 100_000
    assert refused(raw, max_bytes=len(raw)).code == ErrorCode.BAD_JSON


@pytest.mark.parametrize("raw", ["[]", '"ping"', "42", "null", "true"])
def test_not_an_object(raw: str) -> None:
    assert refused(raw).code == ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "frame", [{}, {"type": None}, {"type": 3}, {"type": "hello"}, {"type": "call.reject"}]
)
def test_unknown_or_missing_type(frame: dict[str, object]) -> None:
    error = refused(json.dumps(frame))
    assert error.code == ErrorCode.UNKNOWN_TYPE
    expected = "chat, typing, ping, call.offer, call.answer, call.ice, call.mute, call.hangup"
    assert expected in error.message


@pytest.mark.parametrize("id_", [None, "", 42, ["c1"]])
def test_chat_without_a_string_id(id_: object) -> None:
    frame = {"type": "chat", "text": "hello"} | ({} if id_ is None else {"id": id_})
    error = refused(json.dumps(frame))
    assert (error.code, error.id) == (ErrorCode.MISSING_ID, None)


def test_chat_id_too_long() -> None:
    error = refused(json.dumps({"type": "chat", "id": "i" * (MAX_ID_CHARS + 1), "text": "x"}))
    assert (error.code, error.id) == (ErrorCode.ID_TOO_LONG, None)


@pytest.mark.parametrize("text", [None, "", "  \n\t", 42, {"t": "x"}])
def test_chat_without_text_echoes_the_id(text: object) -> None:
    frame = {"type": "chat", "id": "c7"} | ({} if text is None else {"text": text})
    error = refused(json.dumps(frame))
    assert (error.code, error.id) == (ErrorCode.MISSING_TEXT, "c7")


def test_chat_text_too_long_echoes_the_id() -> None:
    error = refused(json.dumps({"type": "chat", "id": "c8", "text": "x" * (MAX_TEXT_CHARS + 1)}))
    assert (error.code, error.id) == (ErrorCode.TEXT_TOO_LONG, "c8")


@pytest.mark.parametrize("sdp", [None, "", 1])
def test_call_offer_without_sdp(sdp: object) -> None:
    frame = {"type": "call.offer"} | ({} if sdp is None else {"sdp": sdp})
    assert refused(json.dumps(frame)).code == ErrorCode.MISSING_SDP


@pytest.mark.parametrize("candidate", [None, "candidate:1", [], 0])
def test_call_ice_without_a_candidate_object(candidate: object) -> None:
    frame = {"type": "call.ice"} | ({} if candidate is None else {"candidate": candidate})
    assert refused(json.dumps(frame)).code == ErrorCode.MISSING_CANDIDATE


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "chat", "id": "n", "text": "bonjour\\u0000"}',
        '{"type": "chat", "id": "n\\u0000", "text": "bonjour"}',
        '{"type": "ping", "\\u0000": 1}',
        '{"type": "call.ice", "candidate": {"candidate": "a\\u0000"}}',
    ],
)
def test_nul_anywhere_is_bad_encoding(raw: str) -> None:
    """PostgreSQL cannot store NUL in text: refused before a chat line is queued."""
    assert refused(raw).code == ErrorCode.BAD_ENCODING


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "ping", "n": ' + "7" * 4301 + "}",
        '{"type": "ping", "n": 1e400}',
        '{"type": "ping", "n": ' + "[" * 65 + "]" * 65 + "}",
    ],
)
def test_huge_numbers_and_deep_nesting_are_bad_json(raw: str) -> None:
    assert refused(raw).code == ErrorCode.BAD_JSON
