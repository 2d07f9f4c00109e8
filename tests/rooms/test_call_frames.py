"""Sans-I/O parsing of the call frames a client answers and mutes with (no sockets)."""

from __future__ import annotations

import json

import pytest

from rooms.frames import CallAnswerFrame, CallMuteFrame, FrameError, parse_client_frame
from rooms.types import ErrorCode

LIMIT = 64 * 1024


def parse(frame: dict[str, object]) -> object:
    return parse_client_frame(json.dumps(frame), LIMIT)


def test_call_answer_carries_its_sdp() -> None:
    assert parse({"type": "call.answer", "sdp": "v=0\r\n"}) == CallAnswerFrame(sdp="v=0\r\n")


@pytest.mark.parametrize("sdp", [None, "", 3, ["v=0"]])
def test_call_answer_without_sdp_is_refused(sdp: object) -> None:
    with pytest.raises(FrameError) as err:
        parse({"type": "call.answer", "sdp": sdp})
    assert err.value.code == ErrorCode.MISSING_SDP


def test_call_mute_carries_both_flags() -> None:
    frame = parse({"type": "call.mute", "audio": False, "video": True})
    assert frame == CallMuteFrame(audio=False, video=True)


@pytest.mark.parametrize(
    "body", [{}, {"audio": True}, {"audio": 1, "video": 0}, {"audio": "no", "video": True}]
)
def test_call_mute_needs_booleans(body: dict[str, object]) -> None:
    with pytest.raises(FrameError) as err:
        parse({"type": "call.mute", **body})
    assert err.value.code == ErrorCode.BAD_MUTE
