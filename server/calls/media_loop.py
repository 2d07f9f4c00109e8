"""Pre-encoded media for call clients that must be cheap (docs/calls.md "Test clients").

A client that encodes its voice and its video in real time spends far more CPU
than the server that forwards them: 24 Opus voices and 24 VP8 videos encoded on
the two cores of a test machine fall behind before the server does. ``MediaLoop``
encodes a few seconds once, with aiortc's own encoders and their settings (the
ones a live ``CallClient`` uses); ``LoopTrack`` plays them back in real time as
``EncodedFrame`` objects, which aiortc's ``RTCRtpSender`` only packetises
(``encoder.pack``, as for an ``av.Packet``). What the server receives is RTP as a
live client sends it: the same codecs, packetisation, frame rates and RFC 6465
audio level; the differences are that the video loop starts again at a keyframe
every ``seconds``, and that a bandwidth estimate (REMB) does not change the bitrate.

The voice of each loop carries its own noise (``ToneSource``), so no two loops
share an Opus payload: bench/calls.py recognises a packet by its bytes on both
sides of the server. Keyframe requests (RTCP PLI/FIR) that reach the sender make
the video loop restart at its keyframe, as an encoder would send one
(``LoopTrack.attach``).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc import RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from server.calls.forward import EncodedFrame, clock_time_base, is_vp8_keyframe
from server.calls.manager import audio_level_dbov

AUDIO_RATE, AUDIO_SAMPLES = 48000, 960  # Opus: 48 kHz clock, 20 ms frames
VIDEO_RATE, VIDEO_FPS = 90000, 30  # VP8: 90 kHz clock (RFC 7741), aiortc's 30 frames/s


class ToneSource:
    """A 440 Hz tone at 48 kHz in 20 ms mono frames, with a little noise of its own.

    A real signal for the Opus encoder, unlike silence; the noise makes every
    source's packets its own (two clean tones started alike encode to the same bytes).
    """

    def __init__(self, seed: int | None = None) -> None:
        self._noise = np.random.default_rng(seed)

    def frame(self, timestamp: int) -> AudioFrame:
        """The frame that starts at ``timestamp`` (in samples)."""
        t = (timestamp + np.arange(AUDIO_SAMPLES)) / AUDIO_RATE
        tone = 8000 * np.sin(2 * np.pi * 440 * t) + self._noise.normal(0, 40, AUDIO_SAMPLES)
        frame = AudioFrame.from_ndarray(
            tone.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.pts, frame.sample_rate = timestamp, AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


def gray_picture(n: int, width: int = 160, height: int = 120) -> VideoFrame:
    """Picture ``n`` of the test video: the whole image at gray level n mod 256."""
    image = np.full((height, width, 3), n % 256, dtype=np.uint8)
    return VideoFrame.from_ndarray(image, format="bgr24")


@dataclass(frozen=True, slots=True)
class LoopFrame:
    data: bytes  # one whole encoded frame (an Opus packet, a VP8 frame)
    keyframe: bool
    audio_level: int | None  # RFC 6465 level of the PCM it was encoded from (audio)


@dataclass(frozen=True)
class MediaLoop:
    """Encoded frames of one kind, played in a loop; the first one is a keyframe."""

    kind: str
    clock_rate: int
    ticks: int  # clock ticks per frame
    frames: tuple[LoopFrame, ...]

    @classmethod
    def tone(cls, seconds: float = 4.0, seed: int | None = None) -> MediaLoop:
        """``seconds`` of a ``ToneSource`` through aiortc's Opus encoder (96 kb/s, voip)."""
        source, encoder = ToneSource(seed), OpusEncoder()
        frames = []
        for i in range(round(seconds * AUDIO_RATE / AUDIO_SAMPLES)):
            pcm = source.frame(i * AUDIO_SAMPLES)
            payloads, _ = encoder.encode(pcm)
            level = audio_level_dbov(pcm)  # as aiortc's sender computes it, per input frame
            frames += [LoopFrame(p, True, level) for p in payloads]
        return cls("audio", AUDIO_RATE, AUDIO_SAMPLES, tuple(frames))

    @classmethod
    def video(cls, seconds: float = 3.0, width: int = 160, height: int = 120) -> MediaLoop:
        """``seconds`` of ``gray_picture`` through aiortc's VP8 encoder (500 kb/s CBR,
        realtime), a keyframe then delta frames; one per size, shared (it is the same
        for every client)."""
        return _video_loop(round(seconds * VIDEO_FPS), width, height)

    @property
    def seconds(self) -> float:
        return len(self.frames) * self.ticks / self.clock_rate


@functools.cache
def _video_loop(count: int, width: int, height: int) -> MediaLoop:
    encoder = Vp8Encoder()
    frames = []
    for n in range(count):
        picture = gray_picture(n, width, height)
        picture.pts, picture.time_base = n, fractions.Fraction(1, VIDEO_FPS)
        # aiortc packetises what it encodes; the loop keeps the whole frame, which the
        # sender packetises again the same way (RFC 7741 payload descriptor).
        payloads, _ = encoder.encode(picture, force_keyframe=n == 0)
        data = b"".join(vp8_depayload(p) for p in payloads)
        frames.append(LoopFrame(data, is_vp8_keyframe(data), None))
    if not frames or not frames[0].keyframe:
        raise ValueError("the VP8 loop must start with a keyframe")
    return MediaLoop("video", VIDEO_RATE, VIDEO_RATE // VIDEO_FPS, tuple(frames))


class LoopTrack(MediaStreamTrack):
    """Plays a ``MediaLoop`` in real time; ``recv`` gives ``EncodedFrame`` objects."""

    def __init__(self, loop: MediaLoop) -> None:
        super().__init__()
        self.kind = loop.kind
        self.loop = loop
        self.keyframe_requests = 0  # PLI/FIR that reached our sender (attach)
        self.audio_level: int | None = None  # of the frame last given to the sender
        self._next = 0  # index in the loop
        self._pts = 0
        self._start: float | None = None

    def request_keyframe(self) -> None:
        """The next frame sent is the loop's keyframe: an encoder's answer to a PLI."""
        self.keyframe_requests += 1
        if self.kind == "video":
            self._next = 0

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._pts += self.loop.ticks
            await asyncio.sleep(self._start + self._pts / self.loop.clock_rate - time.time())
        frame = self.loop.frames[self._next]
        self._next = (self._next + 1) % len(self.loop.frames)
        self.audio_level = frame.audio_level
        return EncodedFrame(frame.data, self._pts, clock_time_base(self.loop.clock_rate))

    def attach(self, sender: RTCRtpSender) -> None:
        """Hook this track into the aiortc sender that ``addTrack`` gave for it.

        aiortc's sender handles a PLI/FIR with ``_send_keyframe``, which only sets a
        flag for an encoder that pre-encoded media does not go through; and it sets
        the RFC 6465 audio level only for frames it encodes. Instance attributes take
        precedence over those methods (as in ``forward.forward_keyframe_requests``):
        the sender's own method still runs first, then the loop does the encoder's part.
        """
        send_keyframe = sender._send_keyframe

        def keyframe() -> None:
            send_keyframe()
            self.request_keyframe()

        sender._send_keyframe = keyframe  # type: ignore[method-assign]
        if self.kind != "audio":
            return
        next_frame: Callable[[Any], Awaitable[Any]] = sender._next_encoded_frame

        async def with_level(codec: Any) -> Any:
            frame = await next_frame(codec)
            if frame is not None:
                frame.audio_level = self.audio_level
            return frame

        sender._next_encoded_frame = with_level  # type: ignore[method-assign]
