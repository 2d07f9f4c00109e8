"""Pre-encoded media for cheap call clients (server.calls.media_loop).

By values first: the loops decode with aiortc's own decoders, no two voices share a
packet, the track plays in real time and restarts the video at its keyframe, and
the sender hook gives the audio level and honours a keyframe request. Then through
a real server: pre-encoded clients hear and see each other, the server reads their
voice level, and a receiver's PLI reaches the source's loop.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiortc import RTCRtpSender
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

from server.calls.client import CallClient
from server.calls.forward import EncodedFrame, is_vp8_keyframe
from server.calls.manager import FORWARDED_CODECS, audio_level_dbov
from server.calls.media_loop import LoopTrack, MediaLoop, ToneSource
from server.testing import LiveServer
from tests.calls.conftest import Join, calls_of

OPUS = FORWARDED_CODECS["audio"][0]
VP8 = next(c for c in FORWARDED_CODECS["video"] if c.mimeType.lower() == "video/vp8")


def sender_for(track: LoopTrack) -> RTCRtpSender:
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    return RTCRtpSender(track, transport)


def test_the_video_loop_is_a_keyframe_then_deltas_that_decode_to_the_pictures() -> None:
    loop = MediaLoop.video(seconds=1.0)
    assert len(loop.frames) == 30 and loop.ticks == 3000 and loop.seconds == 1.0
    assert [f.keyframe for f in loop.frames] == [True] + [False] * 29
    assert all(f.keyframe == is_vp8_keyframe(f.data) for f in loop.frames)
    decoder = Vp8Decoder()
    means = []
    for n, frame in enumerate(loop.frames + loop.frames[:2]):  # and again from the keyframe
        (picture,) = decoder.decode(JitterFrame(data=frame.data, timestamp=n * 3000))
        assert (picture.width, picture.height) == (160, 120)
        means.append(float(picture.to_ndarray(format="gray").mean()))
    # Gray level n in picture n, within the losses of a 500 kb/s encoder.
    assert all(abs(mean - n % 30) <= 5 for n, mean in enumerate(means))
    assert means[29] > 20 and means[30] < 5


def test_each_tone_loop_has_packets_of_its_own_that_decode() -> None:
    one, two = MediaLoop.tone(seconds=1.0), MediaLoop.tone(seconds=1.0)
    assert len(one.frames) == 50 and one.ticks == 960 and one.clock_rate == 48000
    payloads = [f.data for f in one.frames]
    assert len(set(payloads)) == 50
    assert not set(payloads) & {f.data for f in two.frames}
    # The level is the one aiortc's sender would attach to the PCM it encoded.
    assert {f.audio_level for f in one.frames} == {audio_level_dbov(ToneSource(0).frame(0))}
    decoder = OpusDecoder()
    for n, frame in enumerate(one.frames):
        (pcm,) = decoder.decode(JitterFrame(data=frame.data, timestamp=n * 960))
        assert pcm.samples == 960


async def test_the_track_plays_in_real_time_and_restarts_video_at_the_keyframe() -> None:
    loop = MediaLoop.video(seconds=0.2)  # 6 frames
    track = LoopTrack(loop)
    start = time.monotonic()
    got = [await track.recv() for _ in range(8)]
    assert time.monotonic() - start >= 7 / 30 - 0.01
    assert all(isinstance(f, EncodedFrame) for f in got)
    assert [f.pts for f in got] == [n * 3000 for n in range(8)]
    assert [bytes(f) for f in got] == [f.data for f in loop.frames + loop.frames[:2]]
    track.request_keyframe()  # mid-loop: the next frame is the keyframe
    after = await track.recv()
    assert after.pts == 8 * 3000 and bytes(after) == loop.frames[0].data
    assert track.keyframe_requests == 1
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_the_sender_sends_the_level_and_restarts_the_loop_on_a_keyframe_request() -> None:
    audio = LoopTrack(MediaLoop.tone(seconds=0.1))
    sender = sender_for(audio)
    audio.attach(sender)
    frame = await sender._next_encoded_frame(OPUS)
    assert frame is not None
    assert frame.payloads == [audio.loop.frames[0].data]  # packed as is
    assert frame.audio_level == audio.loop.frames[0].audio_level is not None

    video = LoopTrack(MediaLoop.video(seconds=0.2))
    sender = sender_for(video)
    video.attach(sender)
    for _ in range(3):
        frame = await sender._next_encoded_frame(VP8)
    sender._send_keyframe()  # what aiortc calls on an RTCP PLI or FIR
    frame = await sender._next_encoded_frame(VP8)
    assert frame is not None and video.keyframe_requests == 1
    assert is_vp8_keyframe(b"".join(vp8_depayload(p) for p in frame.payloads))


def last_quality(client: CallClient) -> dict[int, dict[str, Any]]:
    for frame in reversed(client.frames):
        if frame.get("type") == "call.quality":
            return {p["user"]["id"]: p for p in frame["participants"]}
    return {}


def loop_of(client: CallClient, kind: str) -> LoopTrack:
    assert client.pc is not None
    track = next(s.track for s in client.pc.getSenders() if s.kind == kind)
    assert isinstance(track, LoopTrack)
    return track


@pytest.mark.slow
@pytest.mark.parametrize("settings", [{"call_quality_interval_s": 0.5}], indirect=True)
async def test_pre_encoded_clients_through_the_server(
    live_server: LiveServer, open_room: Join
) -> None:
    calls_of(live_server).keyframe_delays = ()  # only the receiver's PLI below
    urg = await open_room("urg_a", video=True, encoded=True)
    man = await open_room("man_a", encoded=True)
    for client in (urg, man):
        await client.join()
    await man.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 2)
    ids = {p["role"]: p["user"]["id"] for p in man.state["participants"]}  # type: ignore[index]
    await urg.wait_for(lambda c: c.received[(ids["manipulator"], "audio")] >= 25)
    await man.wait_for(lambda c: c.received[(ids["urgentist"], "audio")] >= 25)
    await man.wait_for(lambda c: c.received[(ids["urgentist"], "video")] >= 10)
    # The server read both voices' RFC 6465 level from the packets: both speak.
    await urg.wait_for(
        lambda c: len(q := last_quality(c)) == 2 and all(e["speaking"] for e in q.values())
    )

    # The manipulator's peer asks for a picture, as a browser does when it cannot decode.
    video = loop_of(urg, "video")
    before = video.keyframe_requests
    assert man.pc is not None
    receiver = next(
        t.receiver
        for t in man.pc.getTransceivers()
        if t.kind == "video" and t.receiver.getSynchronizationSources()
    )
    (source,) = receiver.getSynchronizationSources()
    await receiver._send_rtcp_pli(source.source)
    await urg.wait_for(lambda c: video.keyframe_requests > before)
    for client in (urg, man):
        await client.hangup()
    await man.wait_for(lambda c: not (c.state or {}).get("participants"))
    assert calls_of(live_server).peer_count == 0
