"""Selective forwarding of encoded media (docs/calls.md "Forwarding").

The server receives each participant's RTP with an aiortc ``RTCRtpReceiver``, which
checks SRTP, sends NACKs and reassembles whole encoded frames (one Opus packet, one
VP8 frame) in its jitter buffer, then hands them to a decoder thread. ``FrameTap``
takes those encoded frames before that thread, and ``ForwardTrack`` gives them to
the other participants' ``RTCRtpSender`` as ``EncodedFrame`` objects (what the
sender reads of an ``av.Packet``: its bytes, ``pts`` and ``time_base``), which the
sender packetises without an encoder (``encoder.pack``). Nothing is decoded unless a
recording asks for it (``FrameTap.decode``).

The tap relies on two aiortc internals, checked by tests/calls/test_forward.py
against the pinned version (``AIORTC_VERSION``):

- ``RTCRtpReceiver._handle_rtp_packet`` puts ``(codec, JitterFrame)`` into the
  receiver's ``__decoder_queue`` (a ``queue.Queue``) on the event loop, with the
  frame's timestamp already mapped to start at 0 in the codec's clock;
- ``RTCRtpReceiver.receive`` hands that queue to the decoder thread, so the tap must
  be installed before (aiortc emits ``track`` before it starts its receivers).

Keyframe requests: a PLI or FIR from a destination makes aiortc's sender call its
``_send_keyframe``; a forwarding sender has no encoder to honour it, so
``forward_keyframe_requests`` sends a PLI to the source's sender instead, through the
source's receiver (``_send_rtcp_pli``).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

log = logging.getLogger("teleimagerie.calls")

AIORTC_VERSION = "1.16.0"  # the internals above were read in this version
# Frames a destination may lag behind before the oldest are dropped: 10 x 20 ms of
# voice; for video a backlog means a stalled link, so the queue restarts on a keyframe.
MAX_BACKLOG = {"audio": 10, "video": 30}


class EncodedFrame:
    """One encoded frame on its way to a forwarding sender.

    aiortc's sender packs anything that is not an ``av.Frame`` with
    ``encoder.pack(packet)``, which reads ``bytes(packet)``, ``packet.pts`` and
    ``packet.time_base`` only. An ``av.Packet`` would copy the payload into an
    AVPacket and ``bytes()`` would copy it back: this keeps the bytes as received,
    shared by every destination, and its time base is the codec's clock, so the
    encoder's time base conversion is a no-op.
    """

    __slots__ = ("data", "pts", "time_base")

    def __init__(self, data: bytes, pts: int, time_base: fractions.Fraction) -> None:
        self.data = data
        self.pts = pts
        self.time_base = time_base

    def __bytes__(self) -> bytes:
        return self.data


_TIME_BASES: dict[int, fractions.Fraction] = {}


def clock_time_base(clock_rate: int) -> fractions.Fraction:
    """1/clock rate, built once per rate (a Fraction costs microseconds, per frame)."""
    base = _TIME_BASES.get(clock_rate)
    if base is None:
        base = _TIME_BASES[clock_rate] = fractions.Fraction(1, clock_rate)
    return base


class FrameTap(queue.Queue[Any]):
    """Replaces a receiver's decoder queue: every encoded frame goes to the
    forwarding tracks first, and to the decoder thread only when ``decode`` is set."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str) -> None:
        super().__init__()
        self.receiver = receiver
        self.kind = kind
        self.decode = False
        self.tracks: set[ForwardTrack] = set()
        self.frames = 0  # encoded frames seen (tests, stats)
        self.last_arrival = 0.0  # time.monotonic() of the last one

    @classmethod
    def install(cls, receiver: RTCRtpReceiver, kind: str) -> FrameTap:
        if getattr(receiver, "_RTCRtpReceiver__started", True):
            # The decoder thread would keep the old queue and never be stopped.
            raise RuntimeError("the receiver already started: install the tap before")
        for name in ("__decoder_queue", "__jitter_buffer"):
            if not hasattr(receiver, "_RTCRtpReceiver" + name):
                raise RuntimeError(f"aiortc {aiortc.__version__} has no receiver {name}")
        tap = cls(receiver, kind)
        receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
        if kind == "audio":
            receiver._RTCRtpReceiver__jitter_buffer = AudioPassThrough()  # type: ignore[attr-defined]
        return tap

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stops: end the decoder thread and the tracks
            for track in list(self.tracks):
                track.stop()
            super().put(item, block, timeout)
            return
        codec, frame = item
        self.frames += 1
        self.last_arrival = time.monotonic()
        if self.tracks:
            encoded = EncodedFrame(frame.data, frame.timestamp, clock_time_base(codec.clockRate))
            for track in list(self.tracks):
                track.feed(encoded)
        if self.decode:
            super().put(item, block, timeout)

    def subscribe(self) -> ForwardTrack:
        track = ForwardTrack(self)
        self.tracks.add(track)
        return track

    def request_keyframe(self) -> None:
        """Ask the source for a keyframe (RTCP PLI on its media SSRC)."""
        if self.kind != "video":
            return
        for source in self.receiver.getSynchronizationSources():
            task = asyncio.ensure_future(self.receiver._send_rtcp_pli(source.source))
            task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("keyframe request failed", exc_info=task.exception())


class ForwardTrack(MediaStreamTrack):
    """One destination's copy of a source: encoded frames as ``EncodedFrame``.

    A deque and one waiting future rather than an ``asyncio.Queue``: one frame in,
    one frame out, fifty times a second per voice and destination, and the sender
    is the only reader.
    """

    def __init__(self, tap: FrameTap) -> None:
        super().__init__()
        self.kind = tap.kind
        self.tap = tap
        self._frames: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # A destination that starts mid-stream could decode nothing before a keyframe.
        self._waiting_keyframe = tap.kind == "video"
        self.on("ended", self._detach)

    def _detach(self) -> None:
        self.tap.tracks.discard(self)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def backlog(self) -> int:
        """Frames waiting for the destination's sender."""
        return len(self._frames)

    def feed(self, frame: EncodedFrame) -> None:
        if len(self._frames) >= MAX_BACKLOG[self.kind]:
            # The destination's sender is behind: drop rather than add delay.
            self._frames.clear()
            if self.kind == "video":
                self._waiting_keyframe = True
                self.tap.request_keyframe()
        if self._waiting_keyframe:
            if not is_vp8_keyframe(frame.data):
                return
            self._waiting_keyframe = False
        self._frames.append(frame)
        self._wake()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.readyState != "live":
            raise MediaStreamError
        return self._frames.popleft()


class AudioPassThrough:
    """The audio receiver's jitter buffer, without its delay.

    aiortc's audio buffer holds 4 frames (prefetch) and completes a frame only when
    the next one starts: 80-100 ms added before the frame even reaches the tap. An
    Opus RTP packet is one whole frame, so it is forwarded as it arrives; smoothing
    is the listener's jitter buffer's job. A packet older than one already passed on
    is dropped (the forwarding sender renumbers, so a late one would look new).
    The packet's RFC 6465 audio level, when the sender sets it, is kept for the
    quality indicators (server/calls/quality.py).
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self.audio_level: tuple[bool, int] | None = None  # (voice activity, -dBov)
        self.level_at = 0.0  # time.monotonic() of that level

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if packet.extensions.audio_level is not None:
            self.audio_level = packet.extensions.audio_level
            self.level_at = time.monotonic()
        seq = packet.sequence_number
        if self._last is not None:
            ahead = uint16_add(seq, -self._last)  # modulo 2**16
            if ahead == 0 or ahead >= 0x8000:
                return False, None
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame."""
    return bool(data) and not data[0] & 0x01


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Route the PLI/FIR that reach this forwarding sender to ``request``.

    aiortc's sender handles them with ``self._send_keyframe()``, which would only
    set a flag for an encoder this sender does not use; the instance attribute
    takes precedence over the method.
    """
    sender._send_keyframe = request  # type: ignore[method-assign]
