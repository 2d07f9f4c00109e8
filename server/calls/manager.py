"""Live voice and video consults in the exam room (docs/calls.md).

Hospital networks rarely let two browsers reach each other, so every participant
talks to a server-side aiortc peer (an SFU-like relay): one RTCPeerConnection per
room connection, and aiortc's MediaRelay fans each participant's tracks out to the
others of the same exam's call. Signalling is JSEP (RFC 8829) over the room socket:

- the client opens with ``call.offer`` (its own tracks) and gets ``call.answer``;
- whenever the server has tracks to add to (or retire from) a participant's peer,
  it sends that participant a ``call.offer`` naming which ``mid`` carries whose
  media, and the client replies with ``call.answer``.

The server gathers its ICE candidates before answering (aiortc does not trickle),
so it never sends ``call.ice``; it accepts trickled candidates from browsers.
One CallManager per process: with several web processes, the members of one exam
must reach the same process (sticky routing on the exam path), see docs/calls.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import aioice.ice
import aiortc.rtp
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs import get_capabilities
from aiortc.contrib.media import MediaRelay
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcpeerconnection import filter_preferred_codecs
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame

from rooms.frames import (
    CallAnswerFrame,
    CallHangupFrame,
    CallIceFrame,
    CallMuteFrame,
    CallOfferFrame,
    ClientFrame,
)
from rooms.types import ErrorCode, EventKind, error_frame
from server.calls.forward import FrameTap, forward_keyframe_requests
from server.calls.quality import Sample, assess, read_sample
from server.calls.recording import VoiceRecorder, recording_enabled
from server.core.channels import room_channel
from server.core.config import Settings
from server.exams.publish import publish_events
from server.exams.service import append_event, event_json

if TYPE_CHECKING:
    from server.core.context import AppContext
    from server.core.identity import Principal

log = logging.getLogger("teleimagerie.calls")


class Connection(Protocol):
    """What a call needs of one member's room socket (server/live/room.py's
    ``Connection`` is the one there is): who, where, and a way to send."""

    # Read-only (properties), so that a socket holding a richer context (the
    # LiveContext of server/live/room.py) is one too.
    @property
    def app(self) -> AppContext: ...
    @property
    def principal(self) -> Principal: ...
    @property
    def exam_id(self) -> str: ...
    @property
    def conn_id(self) -> str: ...

    def push(self, frame: dict[str, Any]) -> None: ...


class CallRouter(Protocol):
    """What the manager asks of the routing of call frames between web processes
    (server/calls/cluster.py): ``route`` and ``leave`` answer True when the frame or
    the departure was handled for a call held elsewhere."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def route(self, conn: Connection, frame: ClientFrame) -> bool: ...

    async def leave(self, conn: Connection) -> bool: ...

    def forget(self, conn: Connection) -> None: ...


class CallError(Exception):
    """A refused call frame; becomes an ``error`` frame, the socket stays open."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)", re.MULTILINE)
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) (\S+)", re.MULTILINE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*?)\r?$", re.MULTILINE)
_PT_LINE = re.compile(r"^(a=(?:rtpmap|fmtp|rtcp-fb):)(\d+)")
_APT = re.compile(r"apt=(\d+)")


def _codecs_by_key(sdp: str) -> dict[int, tuple[str, ...]]:
    """Payload type -> what it means (name, and H.264 mode/profile; RTX by its base)."""
    names = {int(pt): name.lower() for pt, name in _RTPMAP.findall(sdp)}
    fmtp = {int(pt): params for pt, params in _FMTP.findall(sdp)}

    def key(pt: int) -> tuple[str, ...]:
        params = dict(p.strip().partition("=")[::2] for p in fmtp.get(pt, "").split(";"))
        if names[pt].startswith("rtx/"):
            apt = int(params.get("apt", "-1"))
            return ("rtx", *key(apt)) if apt in names else ("rtx",)
        if names[pt].startswith("h264/"):
            mode = params.get("packetization-mode", "0")
            return (names[pt], mode, params.get("profile-level-id", "").lower())
        return (names[pt],)

    return {pt: key(pt) for pt in names}


def keep_negotiated_ids(offer_sdp: str, negotiated_sdp: str | None) -> str:
    """Rewrite a server offer's RTP header extension ids and dynamic payload types to
    the ones this session already negotiated.

    aiortc's ``createOffer`` numbers both from its own tables on every offer (opus
    96, mid extension 1...), but a session's numbers may not change (RFC 8285, RFC
    8843: one space for the BUNDLE group). aiortc clients use aiortc's numbers
    anyway; a browser does not (Chromium: opus 111, audio level 1). Chromium refuses
    an offer that reassigns an extension id, and if a payload type moved it would
    switch its own stream to the new one, which the server's receiver, configured
    once, drops. Numbers the session has not used yet get free ones. aiortc
    configures its new senders from the answer, which echoes these numbers.
    """
    negotiated = negotiated_sdp or ""
    ids = {uri: int(i) for i, _, uri in _EXTMAP.findall(negotiated)}

    def remap_extmap(match: re.Match[str]) -> str:
        uri = match.group(3)
        if uri not in ids:
            ids[uri] = min(set(range(1, 15)) - set(ids.values()))
        return f"a=extmap:{ids[uri]}{match.group(2) or ''} {uri}"

    known: dict[tuple[str, ...], int] = {}
    for pt, key in _codecs_by_key(negotiated).items():
        known.setdefault(key, pt)
    taken = set(_codecs_by_key(negotiated))
    pts: dict[int, int] = {}
    offered = _codecs_by_key(offer_sdp)
    for pt in sorted(p for p in offered if p >= 96):
        new = known.get(offered[pt])
        if new is None or new in pts.values():
            new = min(set(range(96, 128)) - taken - set(pts.values()))
        pts[pt] = new

    def remap_pt(token: str) -> str:
        pt = token.rstrip("\r")  # the last format of an m= line keeps its CRLF
        return str(pts.get(int(pt), pt)) + token[len(pt) :] if pt.isdigit() else token

    lines = []
    for line in _EXTMAP.sub(remap_extmap, offer_sdp).split("\n"):
        if line.startswith("m="):
            head = line.split(" ")
            line = " ".join(head[:3] + [remap_pt(t) for t in head[3:]])
        else:
            line = _PT_LINE.sub(lambda m: m.group(1) + remap_pt(m.group(2)), line)
            if line.startswith("a=fmtp:"):
                line = _APT.sub(lambda m: "apt=" + remap_pt(m.group(1)), line)
        lines.append(line)
    return "\n".join(lines)


def restrict_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer ICE host candidates on these addresses only (process-wide).

    aioice skips loopback and offers every other interface; a server with a known
    public address, or tests on 127.0.0.1, need to choose. aiortc has no option for
    it, so the module function aioice calls is replaced.
    """
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)
    ]


def audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A audio level, as aiortc computes it, with numpy.

    aiortc's version loops over every sample in Python on the event loop: about
    5 ms per 20 ms stereo frame, a quarter of a core per relayed voice (found by
    bench/calls.py). Same formula, same result, a few microseconds.
    """
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    rms = math.sqrt(float(np.dot(samples, samples)) / (frame.samples * 32767 * 32767))
    if rms <= 0:
        return -127
    return round(min(max(20 * math.log10(rms), -127), 0))


def patch_aiortc() -> None:
    """Replace aiortc's audio level with :func:`audio_level_dbov` (process-wide).

    Done where calls are built, not at import: only a process that runs calls
    pays for it, and importing this module changes nothing."""
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov


def _forwarded_codecs() -> dict[str, list[Any]]:
    """One codec per kind for the whole call: a forwarded frame is sent as it was
    encoded, so every member must send and receive the same codec (Opus; VP8 with
    its RTX, the first choice of browsers and aiortc)."""
    wanted = {"audio": ("audio/opus",), "video": ("video/vp8", "video/rtx")}
    return {
        kind: [c for c in get_capabilities(kind).codecs if c.mimeType.lower() in names]
        for kind, names in wanted.items()
    }


FORWARDED_CODECS = _forwarded_codecs()


def restrict_codecs(pc: RTCPeerConnection) -> None:
    """Answer (and later offer) only the forwarded codecs on every m-line.

    The transceivers of a client offer are created by setRemoteDescription with all
    the codecs in common; aiortc answers with ``transceiver._codecs``, so it is
    narrowed here before createAnswer (setCodecPreferences covers later offers).
    """
    for t in pc.getTransceivers():
        preferred = FORWARDED_CODECS[t.kind]
        common = filter_preferred_codecs(t._codecs, preferred)
        if not common:
            raise CallError(ErrorCode.CALL_FAILED, f"the offer's {t.kind} has neither Opus nor VP8")
        t._codecs = common
        t.setCodecPreferences(preferred)


@dataclass(eq=False)
class Participant:
    """One room connection in the call, with its server-side peer."""

    conn: Connection
    pc: RTCPeerConnection
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sources: dict[str, MediaStreamTrack] = field(default_factory=dict)  # kind -> its media
    taps: dict[str, FrameTap] = field(default_factory=dict)  # kind -> its encoded frames
    # (source conn_id, kind) -> the transceiver relaying that media to this participant
    outgoing: dict[tuple[str, str], RTCRtpTransceiver] = field(default_factory=dict)
    senders_of: dict[RTCRtpTransceiver, dict[str, Any]] = field(default_factory=dict)
    audio: bool = True
    video: bool = False
    dirty: bool = False  # tracks changed since the last offer this participant answered
    closing: bool = False  # left the call: its peer is being closed
    recorder: VoiceRecorder | None = None
    joined_at: float = field(default_factory=time.monotonic)
    sample: Sample | None = None  # the last quality sample (docs/calls.md "Quality")

    def public(self) -> dict[str, Any]:
        user = self.conn.principal.user
        return {
            "user": {"id": user.id, "display_name": user.display_name},
            "role": self.conn.principal.role,
            "muted": not self.audio,
            "video": self.video,
        }


@dataclass(eq=False)
class Call:
    exam_id: str
    started_at: datetime
    recording: bool = False  # decided when the call starts, announced to everyone
    announced: bool = False  # call.started written: a call that never connected leaves no trace
    participants: dict[str, Participant] = field(default_factory=dict)  # by conn_id
    users: set[int] = field(default_factory=set)  # everyone who took part


class CallManager:
    """The calls of this process: who is in which, their peers, the relay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_participants = settings.call_max_participants
        self.relay = MediaRelay()
        self.calls: dict[str, Call] = {}
        self._pcs: set[RTCPeerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        if settings.call_media not in ("forward", "transcode"):
            raise ValueError(f"CALL_MEDIA must be forward or transcode, not {settings.call_media}")
        self.forward = settings.call_media == "forward"
        # When the relayed video encoders are asked for a keyframe after a renegotiation.
        self.keyframe_delays: tuple[float, ...] = (0.3, 1.0)
        patch_aiortc()
        if settings.call_host_addresses:
            restrict_host_addresses(settings.call_host_addresses)
        self.cluster: CallRouter | None = None

    async def start(self, router: CallRouter) -> None:
        """Take part in the routing of calls between web processes through ``router``
        (server/calls/cluster.py's ``CallCluster``, given by server/composition.py)."""
        self.cluster = router
        await router.start()

    @property
    def peer_count(self) -> int:
        """Open server-side peer connections (tests and metrics check for leaks)."""
        return len(self._pcs)

    def configuration(self) -> RTCConfiguration:
        # An explicit empty list: aiortc would otherwise use a public STUN server.
        # max-bundle: with aiortc's default (balanced), a transceiver added during a
        # renegotiation may get a transport of its own that never connects.
        return RTCConfiguration(
            iceServers=[RTCIceServer(**s) for s in self.settings.ice_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )

    # -- frames -----------------------------------------------------------

    async def handle(self, conn: Connection, frame: ClientFrame) -> None:
        """Route one call.* frame; a refusal becomes an error frame."""
        try:
            if self.cluster is not None and await self.cluster.route(conn, frame):
                return  # the call is held by another process
            if isinstance(frame, CallOfferFrame):
                await self._offer(conn, frame.sdp)
            elif isinstance(frame, CallAnswerFrame):
                await self._answer(self._member(conn), frame.sdp)
            elif isinstance(frame, CallIceFrame):
                await self._ice(self._member(conn), frame.candidate)
            elif isinstance(frame, CallMuteFrame):
                p = self._member(conn)
                p.audio, p.video = frame.audio, frame.video
                await self._broadcast_state(conn)
            elif isinstance(frame, CallHangupFrame):
                self._member(conn)
                await self.leave(conn)
        except CallError as exc:
            conn.push(dict(error_frame(exc.code, exc.message)))

    def _member(self, conn: Connection) -> Participant:
        call = self.calls.get(conn.exam_id)
        p = call.participants.get(conn.conn_id) if call else None
        if p is None:
            raise CallError(ErrorCode.NOT_IN_CALL, "join the call with call.offer first")
        return p

    async def _offer(self, conn: Connection, sdp: str) -> None:
        call = self.calls.get(conn.exam_id)
        p = call.participants.get(conn.conn_id) if call else None
        joining = p is None
        if p is None:
            p = await self._join(conn)
        try:
            async with p.lock:
                if p.pc.signalingState != "stable":
                    raise CallError(
                        ErrorCode.CALL_GLARE, "answer the server's call.offer, then offer again"
                    )
                await p.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if not any(t.kind == "audio" for t in p.pc.getTransceivers()):
                    # aiortc accepts any text as SDP; a consult needs a voice at least.
                    raise CallError(ErrorCode.CALL_FAILED, "the offer has no audio m-line")
                if self.forward:
                    restrict_codecs(p.pc)
                await p.pc.setLocalDescription(await p.pc.createAnswer())
                conn.push({"type": "call.answer", "sdp": p.pc.localDescription.sdp})
        except CallError:
            if joining:
                await self.leave(conn)
            raise
        except Exception as exc:  # aiortc raises ValueError & co. on SDP it cannot use
            log.info("call offer refused: %s", exc)
            if joining:
                await self.leave(conn)
            raise CallError(ErrorCode.CALL_FAILED, f"unusable offer: {exc}") from None
        call = self.calls.get(conn.exam_id)
        if call is not None:
            call.users.add(conn.principal.user.id)
        if call is not None and not call.announced:
            call.announced = True
            await self._record(conn, EventKind.CALL_STARTED, {"recording": call.recording})
        await self._start_recorder(conn, p)
        await self._fan_out(conn.exam_id)
        await self._broadcast_state(conn)

    async def _start_recorder(self, conn: Connection, p: Participant) -> None:
        call = self.calls.get(conn.exam_id)
        track = p.sources.get("audio")
        if call is None or not call.recording or p.recorder is not None or track is None:
            return
        if "audio" in p.taps:
            p.taps["audio"].decode = True  # the only decoding a forwarded call does
        try:
            p.recorder = await VoiceRecorder.start(
                conn.app, conn.exam_id, conn.principal.user.id, self.relay.subscribe(track)
            )
        except Exception:
            log.exception("could not start recording the call of exam %s", conn.exam_id)

    async def _join(self, conn: Connection) -> Participant:
        call = self.calls.get(conn.exam_id)
        if call is not None and len(call.participants) >= self.max_participants:
            raise CallError(
                ErrorCode.CALL_FULL, f"the call is full ({self.max_participants} participants)"
            )
        if call is None:
            call = self.calls[conn.exam_id] = Call(conn.exam_id, conn.app.now())
            call.recording = await recording_enabled(conn.app, conn.exam_id)
            self._spawn(self._report_quality(conn, call))
        pc = RTCPeerConnection(self.configuration())
        self._pcs.add(pc)
        p = Participant(conn, pc)
        call.participants[conn.conn_id] = p

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            tap = FrameTap.install(receiver, track.kind)
            tap.decode = not self.forward
            p.taps[track.kind] = tap
            p.sources[track.kind] = track
            if track.kind == "video":
                p.video = True

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "failed":
                self._spawn(self.leave(conn))

        return p

    async def _answer(self, p: Participant, sdp: str) -> None:
        async with p.lock:
            if p.pc.signalingState != "have-local-offer":
                raise CallError(ErrorCode.CALL_FAILED, "no call.offer of the server is pending")
            try:
                await p.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except Exception as exc:
                raise CallError(ErrorCode.CALL_FAILED, f"unusable answer: {exc}") from None
        if p.dirty:
            self._spawn(self._negotiate(p))
        self._spawn(self._keyframes(p))

    async def _keyframes(self, p: Participant) -> None:
        """Ask the relayed video encoders for keyframes once media starts flowing.

        A receiver that missed the first keyframe of a new stream cannot decode the
        ones after it; browsers send a PLI then, aiortc receivers do not, and the
        encoders make the next keyframe only minutes later.
        """
        elapsed = 0.0
        for delay in self.keyframe_delays:
            await asyncio.sleep(delay - elapsed)
            elapsed = delay
            for t in list(p.outgoing.values()):
                if t.kind == "video" and t.sender.track is not None:
                    t.sender._send_keyframe()

    async def _ice(self, p: Participant, init: dict[str, Any]) -> None:
        line = init.get("candidate")
        if not isinstance(line, str):
            raise CallError(ErrorCode.MISSING_CANDIDATE, "candidate.candidate must be a string")
        if not line:
            return  # end of candidates: aiortc needs no signal
        try:
            candidate = candidate_from_sdp(line.removeprefix("candidate:"))
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            await p.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise CallError(ErrorCode.CALL_FAILED, f"unusable candidate: {exc}") from None

    # -- relay and renegotiation -------------------------------------------

    async def _fan_out(self, exam_id: str) -> None:
        """Give every member a relayed copy of every other member's tracks."""
        call = self.calls.get(exam_id)
        if call is None:
            return
        members = list(call.participants.values())
        for dst in members:
            added = False
            async with dst.lock:
                for src in members:
                    if src is dst:
                        continue
                    for kind, track in list(src.sources.items()):
                        if (
                            src.conn.conn_id,
                            kind,
                        ) in dst.outgoing or dst.pc.signalingState == "closed":
                            continue
                        if self.forward:
                            tap = src.taps[kind]
                            t = dst.pc.addTransceiver(tap.subscribe(), direction="sendonly")
                            t.setCodecPreferences(FORWARDED_CODECS[kind])
                            forward_keyframe_requests(t.sender, tap.request_keyframe)
                        else:
                            # Audio is decoded in bursts; dropping a frame is a click.
                            # Video may skip a stale frame rather than fall behind.
                            proxy = self.relay.subscribe(track, buffered=kind == "audio")
                            t = dst.pc.addTransceiver(proxy, direction="sendonly")
                        dst.outgoing[(src.conn.conn_id, kind)] = t
                        dst.senders_of[t] = src.public()["user"]
                        added = True
            if added:
                dst.dirty = True
                self._spawn(self._negotiate(dst))

    async def _negotiate(self, p: Participant) -> None:
        """Send a server offer if tracks changed and no negotiation is in flight."""
        async with p.lock:
            if p.closing or not p.dirty or p.pc.signalingState != "stable":
                return
            p.dirty = False
            try:
                offer = await p.pc.createOffer()
                remote = p.pc.remoteDescription
                sdp = keep_negotiated_ids(offer.sdp, remote.sdp if remote else None)
                await p.pc.setLocalDescription(RTCSessionDescription(sdp, "offer"))
            except InvalidStateError:
                # The peer is being closed (a hang-up or a disconnect while the offer
                # was planned; aiortc marks it closed before its signalling state says
                # so): nothing to offer, and nothing went wrong.
                if not p.closing:
                    raise
                return
            tracks = [
                {"mid": t.mid, "kind": t.kind, "user": p.senders_of[t]}
                for t in p.outgoing.values()
                if t.mid is not None
            ]
            p.conn.push({"type": "call.offer", "sdp": p.pc.localDescription.sdp, "tracks": tracks})

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    # -- quality indicators -------------------------------------------------

    async def _report_quality(self, conn: Connection, call: Call) -> None:
        """Publish the call's ``call.quality`` frame every interval while it lasts
        (ephemeral, like ``call.state``: not clinical, not persisted)."""
        interval = self.settings.call_quality_interval_s
        while True:
            await asyncio.sleep(interval)
            if self.calls.get(call.exam_id) is not call:
                return
            frame = await self.quality(call)
            if frame["participants"]:
                await conn.app.bus.publish(room_channel(call.exam_id), frame)

    async def quality(self, call: Call) -> dict[str, Any]:
        """The ``call.quality`` frame of ``call`` now (docs/api.md)."""
        entries = []
        for p in list(call.participants.values()):
            if p.pc.connectionState == "closed":
                continue
            sample = await read_sample(p.pc, p.taps.get("audio"), time.monotonic())
            entry = assess(
                p.sample, sample, since=p.joined_at, no_media_s=self.settings.call_no_media_s
            )
            p.sample = sample
            entries.append({"user": p.public()["user"], "muted": not p.audio, **entry})
        return {"type": "call.quality", "participants": entries}

    # -- leaving ----------------------------------------------------------

    async def leave(self, conn: Connection) -> None:
        """Hang up (or disconnect): close the peer, retire its media, maybe end the
        call; or tell the process holding the call."""
        if self.cluster is not None and await self.cluster.leave(conn):
            return
        try:
            await self._leave_call(conn)
        finally:
            if self.cluster is not None:
                self.cluster.forget(conn)

    async def _leave_call(self, conn: Connection) -> None:
        call = self.calls.get(conn.exam_id)
        p = call.participants.pop(conn.conn_id, None) if call else None
        if call is None or p is None:
            return
        p.closing = True
        for other in list(call.participants.values()):
            async with other.lock:
                for kind in list(p.sources):
                    t = other.outgoing.pop((conn.conn_id, kind), None)
                    if t is not None:
                        other.senders_of.pop(t, None)
                        if t.sender.track is not None:
                            t.sender.track.stop()
                        t.sender.replaceTrack(None)
                        t.direction = "inactive"
                        other.dirty = True
            if other.dirty:
                self._spawn(self._negotiate(other))
        for t in p.outgoing.values():
            if t.sender.track is not None:
                t.sender.track.stop()
        if p.recorder is not None:
            try:
                await p.recorder.stop(conn.app)
            except Exception:
                log.exception("could not finish a recording of exam %s", conn.exam_id)
        try:
            await p.pc.close()
        finally:
            self._pcs.discard(p.pc)
        if not call.participants and self.calls.get(conn.exam_id) is call:
            del self.calls[conn.exam_id]
        if not call.participants and call.announced:
            call.announced = False  # two last members leaving at once end it once
            duration = (conn.app.now() - call.started_at).total_seconds()
            await self._record(
                conn,
                EventKind.CALL_ENDED,
                {"duration_s": round(duration), "participants": sorted(call.users)},
            )
        await self._broadcast_state(conn)

    async def close(self) -> None:
        """Process shutdown: hang everyone up, then wait for what is in flight."""
        if self.cluster is not None:
            await self.cluster.close()
        for call in list(self.calls.values()):
            for p in list(call.participants.values()):
                with contextlib.suppress(Exception):
                    await self.leave(p.conn)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- room side effects --------------------------------------------------

    def state(self, exam_id: str) -> dict[str, Any]:
        call = self.calls.get(exam_id)
        members = list(call.participants.values()) if call else []
        return {
            "type": "call.state",
            "participants": [p.public() for p in members],
            "recording": bool(call and call.recording),
        }

    async def _broadcast_state(self, conn: Connection) -> None:
        await conn.app.bus.publish(room_channel(conn.exam_id), self.state(conn.exam_id))

    async def _record(self, conn: Connection, kind: EventKind, body: dict[str, Any]) -> None:
        """Persist a call.started / call.ended event and publish it; a failure never
        breaks the call itself."""
        app = conn.app
        user = conn.principal.user
        try:
            async with app.db() as db:
                event = await append_event(db, conn.exam_id, kind, user.id, body, app.now())
                await db.commit()
            await publish_events(app, conn.exam_id, [event_json(event, user)])
        except Exception:
            log.exception("could not record %s for exam %s", kind, conn.exam_id)
