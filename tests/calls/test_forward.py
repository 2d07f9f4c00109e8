"""The forwarding path (docs/calls.md "Forwarding"): encoded media relayed as received.

Real aiortc participants through a real server on loopback; the checks look at the
server's own receivers (nothing decoded), at the aiortc internals the tap relies on,
and at RTCP keyframe requests travelling from a receiver back to the sender.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

import aiortc
import pytest
from aiortc import RTCRtpReceiver
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from server.calls.client import CallClient
from server.calls.forward import AIORTC_VERSION, AudioPassThrough, FrameTap, is_vp8_keyframe
from server.calls.manager import CallManager
from server.testing import LiveServer
from tests.calls.conftest import Join, calls_of

pytestmark = pytest.mark.slow


def got(user_id: int, kind: str, n: int) -> Callable[[CallClient], bool]:
    return lambda c: c.received[(user_id, kind)] >= n


def user_of(client: CallClient, role: str) -> int:
    assert client.state is not None
    return next(p["user"]["id"] for p in client.state["participants"] if p["role"] == role)


def taps(manager: CallManager, exam_id: str) -> dict[int, dict[str, FrameTap]]:
    call = manager.calls[exam_id]
    return {p.conn.principal.user.id: p.taps for p in call.participants.values()}


def test_the_tapped_aiortc_internals_are_those_of_the_pinned_version() -> None:
    """Fails when aiortc changes under the tap: re-read rtcrtpreceiver.py, then bump."""
    assert aiortc.__version__ == AIORTC_VERSION
    certificate = RTCCertificate.generateCertificate()
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    receiver = RTCRtpReceiver("audio", transport)
    assert isinstance(receiver._RTCRtpReceiver__decoder_queue, queue.Queue)  # type: ignore[attr-defined]
    tap = FrameTap.install(receiver, "audio")
    assert receiver._RTCRtpReceiver__decoder_queue is tap  # type: ignore[attr-defined]
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, AudioPassThrough)  # type: ignore[attr-defined]


def test_audio_pass_through_forwards_each_packet_once_and_in_order() -> None:
    buffer = AudioPassThrough()
    out = []
    for seq in (65534, 65535, 0, 65535, 0, 2, 1, 3):  # wraps, a duplicate, a late one
        packet = RtpPacket(sequence_number=seq, timestamp=seq * 960)
        packet._data = bytes([seq % 256])  # type: ignore[attr-defined]
        flag, frame = buffer.add(packet)
        assert flag is False
        if frame is not None:
            out.append(frame.data[0])
    assert out == [254, 255, 0, 2, 3]


def test_vp8_keyframe_bit() -> None:
    assert is_vp8_keyframe(b"\x10\x02\x00\x9d\x01\x2a")  # P bit 0: key frame
    assert not is_vp8_keyframe(b"\x31\x02\x00")
    assert not is_vp8_keyframe(b"")


async def test_forwarded_call_decodes_nothing_on_the_server(
    live_server: LiveServer, open_room: Join, exam_id: str
) -> None:
    urg = await open_room("urg_a", video=True)
    man = await open_room("man_a")
    for client in (urg, man):
        await client.join()
    await urg.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 2)
    urg_id, man_id = user_of(urg, "urgentist"), user_of(urg, "manipulator")

    await urg.wait_for(got(man_id, "audio", 25))
    await man.wait_for(got(urg_id, "audio", 25))
    await man.wait_for(got(urg_id, "video", 5))

    manager = calls_of(live_server)
    by_user = taps(manager, exam_id)
    for kind in ("audio", "video"):
        tap = by_user[urg_id][kind]
        assert tap.frames > 0 and not tap.decode
        # The decoder thread got nothing, so the server-side track has no frame.
        assert tap.receiver.track._queue.empty()  # type: ignore[attr-defined]
        assert len(tap.tracks) == 1  # the manipulator's copy
    await man.hangup()
    await urg.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 1)
    # The manipulator's copies of the urgentist's media ended with its peer.
    assert all(not t.tracks for t in taps(manager, exam_id)[urg_id].values())
    await urg.hangup()
    await urg.wait_for(lambda c: not (c.state or {}).get("participants"))
    assert manager.peer_count == 0


async def test_a_keyframe_request_from_a_receiver_reaches_the_sender(
    live_server: LiveServer, open_room: Join
) -> None:
    # No keyframe requests of the server's own after renegotiations: once the video
    # flows, a PLI reaching the sender can only come from the destination.
    calls_of(live_server).keyframe_delays = ()
    urg = await open_room("urg_a", video=True)
    man = await open_room("man_a")
    await urg.join()
    assert urg.pc is not None
    video_sender = next(s for s in urg.pc.getSenders() if s.kind == "video")
    requests: list[int] = []
    original = video_sender._send_keyframe

    def counted() -> None:  # the real handler, counted
        requests.append(1)
        original()

    video_sender._send_keyframe = counted  # type: ignore[method-assign]
    await man.join()
    await man.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 2)
    urg_id = user_of(man, "urgentist")
    await man.wait_for(lambda c: any(u["id"] == urg_id for u in c.senders.values()))
    await man.wait_for(got(urg_id, "video", 5))
    before = len(requests)

    # The manipulator's peer asks the server's sender (its SSRC, from the server's
    # offer) for a picture, as a browser does when it cannot decode.
    assert man.pc is not None and man.pc.remoteDescription is not None
    remote = SessionDescription.parse(man.pc.remoteDescription.sdp)
    media = next(
        m
        for m in remote.media
        if m.kind == "video" and man.senders.get(m.rtp.muxId or "", {}).get("id") == urg_id
    )
    receiver = next(t.receiver for t in man.pc.getTransceivers() if t.mid == media.rtp.muxId)
    await receiver._send_rtcp_pli(media.ssrc[0].ssrc)

    await urg.wait_for(lambda c: len(requests) > before)


@pytest.mark.parametrize("settings", ["transcode"], indirect=True)
async def test_the_transcoding_relay_stays_selectable(
    live_server: LiveServer, open_room: Join, exam_id: str
) -> None:
    manager = calls_of(live_server)
    assert not manager.forward
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    for client in (urg, man):
        await client.join()
    await urg.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 2)
    urg_id = user_of(urg, "urgentist")
    await man.wait_for(got(urg_id, "audio", 25))
    assert taps(manager, exam_id)[urg_id]["audio"].decode
    assert not taps(manager, exam_id)[urg_id]["audio"].tracks  # MediaRelay carries it
