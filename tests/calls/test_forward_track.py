"""A destination's copy of a source (server.calls.forward.ForwardTrack), fed by values:
what the forwarding sender gets, the backlog rule, the end of the track. No sockets.

And two properties of the test participant (server.calls.client) that bench/calls.py
relies on: every tone encodes to packets of its own, and its audio level is numpy's.
"""

from __future__ import annotations

import asyncio
import fractions

import aiortc.rtp
import numpy as np
import pytest
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from av.packet import Packet

from server.calls.client import CallClient, ToneAudio
from server.calls.forward import MAX_BACKLOG, EncodedFrame, FrameTap
from server.calls.manager import FORWARDED_CODECS, audio_level_dbov

OPUS = FORWARDED_CODECS["audio"][0]
VP8 = next(c for c in FORWARDED_CODECS["video"] if c.mimeType.lower() == "video/vp8")
VP8_KEY, VP8_DELTA = b"\x10\x02\x00\x9d\x01\x2a" + bytes(40), b"\x31\x02\x00" + bytes(40)


def tap_of(kind: str) -> FrameTap:
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    return FrameTap(RTCRtpReceiver(kind, transport), kind)


def put(tap: FrameTap, data: bytes, timestamp: int) -> None:
    codec = OPUS if tap.kind == "audio" else VP8
    tap.put((codec, JitterFrame(data=data, timestamp=timestamp)))


@pytest.mark.parametrize("codec", [OPUS, VP8], ids=["opus", "vp8"])
def test_the_sender_packs_an_encoded_frame_as_it_would_an_av_packet(codec: object) -> None:
    data = VP8_KEY if codec is VP8 else bytes(range(80))
    rate = 48000 if codec is OPUS else 90000
    packet = Packet(data)
    packet.pts, packet.time_base = 123456, fractions.Fraction(1, rate)
    frame = EncodedFrame(data, 123456, fractions.Fraction(1, rate))
    ours, reference = get_encoder(codec), get_encoder(codec)  # type: ignore[arg-type]
    if hasattr(ours, "picture_id"):  # VP8: a random first picture id per encoder
        ours.picture_id = reference.picture_id = 7
    assert ours.pack(frame) == reference.pack(packet)  # type: ignore[arg-type]


async def test_every_destination_gets_the_bytes_as_received_in_order() -> None:
    tap = tap_of("audio")
    first, second = tap.subscribe(), tap.subscribe()
    waiting = asyncio.ensure_future(first.recv())
    await asyncio.sleep(0)
    payloads = [bytes([n]) * 60 for n in range(3)]
    for n, payload in enumerate(payloads):
        put(tap, payload, n * 960)
    got = [await waiting, await first.recv(), await first.recv()]
    assert [bytes(f) for f in got] == payloads
    assert [f.pts for f in got] == [0, 960, 1920]
    assert got[0].time_base == fractions.Fraction(1, 48000)
    assert bytes(await second.recv()) is payloads[0]  # shared, not copied
    assert tap.frames == 3


async def test_a_destination_too_far_behind_loses_the_oldest_audio() -> None:
    tap = tap_of("audio")
    track = tap.subscribe()
    for n in range(MAX_BACKLOG["audio"] + 1):
        put(tap, bytes([n]) * 20, n * 960)
    assert track.backlog == 1
    assert (await track.recv()).pts == MAX_BACKLOG["audio"] * 960


async def test_video_restarts_at_a_keyframe_after_a_backlog() -> None:
    tap = tap_of("video")
    track = tap.subscribe()
    put(tap, VP8_DELTA, 0)  # nothing decodable before the first keyframe
    assert track.backlog == 0
    for n in range(MAX_BACKLOG["video"]):
        put(tap, VP8_KEY if n == 0 else VP8_DELTA, 3000 * (n + 1))
    assert track.backlog == MAX_BACKLOG["video"]
    put(tap, VP8_DELTA, 999_000)  # one too many: emptied, waits for a keyframe again
    assert track.backlog == 0
    put(tap, VP8_KEY, 1_002_000)
    assert track.backlog == 1


async def test_a_stopped_track_ends_the_sender_waiting_on_it() -> None:
    tap = tap_of("audio")
    track = tap.subscribe()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting
    assert track not in tap.tracks
    put(tap, b"late", 0)  # a frame after the end goes nowhere
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_two_tones_started_alike_are_not_the_same_samples() -> None:
    one, two = ToneAudio(), ToneAudio()
    a, b = await one.recv(), await two.recv()
    assert not np.array_equal(a.to_ndarray(), b.to_ndarray())


def test_a_call_client_computes_its_audio_level_with_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiortc.rtp, "compute_audio_level_dbov", lambda frame: -127)
    CallClient("ws://127.0.0.1:1", "exam", "token")
    assert aiortc.rtp.compute_audio_level_dbov is audio_level_dbov
