"""A call participant as code (docs/calls.md): an aiortc peer driven over the room socket.

Tests, the benchmark and the demo use it to join an exam's call with synthetic
audio (and optionally video), encoded live or, for a cheap load generator,
pre-encoded once (``encoded=True``, server.calls.media_loop), answer the server's
renegotiation offers and count the frames received from each other participant,
exactly as docs/calls.md says a browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

import websockets
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from server.calls.forward import FrameTap
from server.calls.manager import patch_aiortc
from server.calls.media_loop import (
    AUDIO_RATE,
    AUDIO_SAMPLES,
    LoopTrack,
    MediaLoop,
    ToneSource,
    gray_picture,
)


class ToneAudio(AudioStreamTrack):
    """A ``ToneSource`` in real time: a 440 Hz tone with a little noise of its own, so
    that every track's Opus packets are its own (bench/calls.py recognises a packet
    across the server by its payload)."""

    def __init__(self) -> None:
        super().__init__()
        self._source = ToneSource()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += AUDIO_SAMPLES
            await asyncio.sleep(self._start + self._timestamp / AUDIO_RATE - time.time())
        else:
            self._start, self._timestamp = time.time(), 0
        return self._source.frame(self._timestamp)


class SmallVideo(VideoStreamTrack):
    """A 160x120 picture whose gray level changes every frame: cheap to encode,
    still real VP8 frames."""

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._n += 1
        frame = gray_picture(self._n)
        frame.pts, frame.time_base = pts, time_base
        return frame


class CallClient:
    """One room connection that can join the exam's call."""

    def __init__(
        self,
        ws_url: str,
        exam_id: str,
        token: str,
        *,
        video: bool = False,
        decode: bool = True,
        encoded: bool = False,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> None:
        # Our audio sender computes the RFC 6465 level of every frame it encodes:
        # the numpy version, as on the server (docs/calls.md "A performance fix").
        patch_aiortc()
        self.url = f"{ws_url}/ws/exams/{exam_id}"
        self.token = token
        self.video = video
        # False: count the encoded frames as they arrive (server.calls.forward.FrameTap)
        # without decoding them; a load generator then costs far less CPU.
        self.decode = decode
        # True: send pre-encoded loops (server.calls.media_loop) instead of encoding
        # the tone and the video in real time: the same RTP for far less CPU.
        self.encoded = encoded
        # What /api/calls/config gave (a browser's RTCConfiguration); relay_only is
        # iceTransportPolicy "relay": TURN candidates only.
        self.ice_servers = ice_servers or []
        self.relay_only = relay_only
        self.pc: RTCPeerConnection | None = None
        self.ws: Any = None
        self.frames: list[dict[str, Any]] = []  # every non-signalling frame, in order
        self.errors: list[dict[str, Any]] = []
        self.state: dict[str, Any] | None = None
        self.senders: dict[str, dict[str, Any]] = {}  # mid -> user, from the server's offers
        self.received: dict[tuple[int, str], int] = defaultdict(int)  # (user id, kind) -> frames
        self.arrivals: dict[tuple[int, str], list[float]] = defaultdict(list)
        self._answered = asyncio.Event()
        self._welcomed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> CallClient:
        self.ws = await websockets.connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}
        )
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        await asyncio.wait_for(self._welcomed.wait(), 30)
        return self

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def join(self, audio: MediaStreamTrack | None = None) -> None:
        """Offer our tracks and wait for the server's answer."""
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[RTCIceServer(**s) for s in self.ice_servers],
                iceTransportPolicy=(
                    RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
                ),
            )
        )
        self.pc.on("track", self._on_track)
        self._add_track(audio or self._media("audio"))
        if self.video:
            self._add_track(self._media("video"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._answered.clear()
        await self.send({"type": "call.offer", "sdp": self.pc.localDescription.sdp})
        await asyncio.wait_for(self._answered.wait(), 10)

    async def add_video(self) -> None:
        """Turn the camera on mid-call: a client renegotiation (docs/calls.md)."""
        assert self.pc is not None
        self.video = True
        self._add_track(self._media("video"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._answered.clear()
        await self.send({"type": "call.offer", "sdp": self.pc.localDescription.sdp})
        await asyncio.wait_for(self._answered.wait(), 10)

    async def hangup(self) -> None:
        await self.send({"type": "call.hangup"})
        await self._close_pc()

    async def close(self) -> None:
        await self._close_pc()
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_for(self, predicate: Any, within: float = 30) -> None:
        """Wait until ``predicate(self)`` holds (frames counted, a state seen...)."""
        # Polling keeps the media tasks free of any lock they would share with waiters.
        deadline = time.monotonic() + within
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {within} s")
            await asyncio.sleep(0.02)

    # -- internals --------------------------------------------------------

    def _media(self, kind: str) -> MediaStreamTrack:
        if self.encoded:
            return LoopTrack(MediaLoop.tone() if kind == "audio" else MediaLoop.video())
        return ToneAudio() if kind == "audio" else SmallVideo()

    def _add_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        sender = self.pc.addTrack(track)
        if isinstance(track, LoopTrack):
            track.attach(sender)

    async def _close_pc(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            try:
                await self._signal(frame)
            except Exception as exc:  # e.g. an offer racing our own hang-up
                self.errors.append({"type": "error", "code": "client", "message": str(exc)})

    async def _signal(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        pc = self.pc
        if kind == "call.answer" and pc is not None:
            await pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "answer"))
            self._answered.set()
        elif kind == "call.offer" and pc is not None:
            for track in frame.get("tracks", []):
                self.senders[track["mid"]] = track["user"]
            await pc.setRemoteDescription(RTCSessionDescription(frame["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send({"type": "call.answer", "sdp": pc.localDescription.sdp})
        else:
            if kind == "error":
                self.errors.append(frame)
            elif kind == "call.state":
                self.state = frame
            elif kind == "welcome":
                self.state = frame.get("call")
                self._welcomed.set()
            self.frames.append(frame)

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        mid = transceiver.mid
        if not self.decode:
            track = FrameTap.install(transceiver.receiver, track.kind).subscribe()
        self._tasks.append(asyncio.get_running_loop().create_task(self._count(mid, track)))

    async def _count(self, mid: str | None, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                user = self.senders.get(mid or "")
                if user is None:
                    continue  # our own m-line echoing nothing, or a retired one
                key = (user["id"], track.kind)
                self.received[key] += 1
                self.arrivals[key].append(time.monotonic())
