"""Quality indicators of a call: who speaks, how each connection fares, whose voice
does not arrive (docs/calls.md "Quality indicators").

Forwarding decodes nothing, so the server measures only what RTP and RTCP already
carry, per participant:

- **speaking**: the RFC 6465 audio level header extension (``ssrc-audio-level``) the
  participant's sender puts on each audio packet (browsers and aiortc's encoder do);
  read from the packets as they arrive (``server.calls.forward.AudioPassThrough``);
- **loss and jitter upstream**: the server's receiver of the participant's audio
  (RFC 3550 A.3 and A.8: packets expected vs received, interarrival jitter);
- **loss and round trip downstream**: the RTCP receiver reports the participant
  sends about the server's streams to it (RFC 3550 6.4.1: fraction lost; round trip
  from LSR/DLSR), as aiortc's senders keep them (``remote-inbound-rtp``);
- **media**: whether the participant's audio reached the server in the last
  ``no_media_s`` seconds.

:func:`assess` is pure (values in, the frame entry out); :func:`read_sample` is the
only part that asks aiortc. The manager publishes one ``call.quality`` frame per call
every ``CALL_QUALITY_INTERVAL_S`` on the room channel; it is not persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from server.calls.forward import FrameTap

# A voice louder than this (dBov, RFC 6465: 0 is the loudest, -127 silence) counts
# as speaking, as does a packet the sender marked with its voice activity flag.
SPEAKING_DBOV = -50
# The audio level is fresh for this long: a sender that stops marking packets (or
# stops sending) is no longer speaking.
LEVEL_FRESH_S = 0.5
# Thresholds of the overall grade (ITU-T G.114 for the round trip's one-way half,
# and the usual Opus tolerance of a few percent of loss).
FAIR = {"loss": 0.02, "jitter_ms": 30.0, "rtt_ms": 300.0}
POOR = {"loss": 0.10, "jitter_ms": 80.0, "rtt_ms": 600.0}


@dataclass(frozen=True, slots=True)
class Sample:
    """What the server knew of one participant at one instant (monotonic ``at``)."""

    at: float
    received: int  # audio packets the server received from the participant
    lost: int  # audio packets the server expected and did not get (cumulative)
    jitter_ms: float | None  # interarrival jitter of the participant's audio
    loss_down: float | None  # worst fraction lost the participant reports on our streams
    rtt_ms: float | None  # worst round trip of our streams to the participant
    level_dbov: int | None  # last audio level the participant's packets carried
    voice: bool  # that packet's voice activity flag
    level_at: float  # when that level arrived (monotonic; 0 if never)
    media_at: float  # when the participant's last audio frame arrived (0 if never)


def assess(
    previous: Sample | None, sample: Sample, *, since: float, no_media_s: float
) -> dict[str, Any]:
    """The ``call.quality`` entry of one participant (without ``user``).

    ``previous``: the sample of the last period (loss is measured over the period);
    ``since``: when the participant joined, so that a voice that never arrived is
    reported once ``no_media_s`` have passed."""
    received = sample.received - (previous.received if previous else 0)
    lost = max(sample.lost - (previous.lost if previous else 0), 0)
    loss_up = lost / (received + lost) if received + lost else None
    fresh = sample.at - sample.level_at <= LEVEL_FRESH_S
    level = sample.level_dbov if fresh else None
    speaking = level is not None and (sample.voice or level > SPEAKING_DBOV)
    media = sample.at - (sample.media_at or since) < no_media_s
    losses = [x for x in (loss_up, sample.loss_down) if x is not None]
    entry: dict[str, Any] = {
        "speaking": speaking,
        "level_dbov": level,
        "media": media,
        "loss": round(max(losses), 4) if losses else None,
        "loss_up": None if loss_up is None else round(loss_up, 4),
        "loss_down": None if sample.loss_down is None else round(sample.loss_down, 4),
        "jitter_ms": None if sample.jitter_ms is None else round(sample.jitter_ms, 1),
        "rtt_ms": None if sample.rtt_ms is None else round(sample.rtt_ms, 1),
    }
    entry["grade"] = grade(entry) if media else "none"
    return entry


def grade(entry: dict[str, Any]) -> str:
    """``good``, ``fair`` or ``poor``: the worst of loss, jitter and round trip."""
    worst = "good"
    for name in ("loss", "jitter_ms", "rtt_ms"):
        value = entry.get(name)
        if value is None:
            continue
        if value >= POOR[name]:
            return "poor"
        if value >= FAIR[name]:
            worst = "fair"
    return worst


async def read_sample(pc: RTCPeerConnection, tap: FrameTap | None, now: float) -> Sample:
    """One participant's :class:`Sample` from its server peer's aiortc statistics."""
    received = lost = 0
    jitter_ms: float | None = None
    loss_down: list[float] = []
    rtts: list[float] = []
    audio_receiver = tap.receiver if tap is not None else None
    for t in pc.getTransceivers():
        if t.receiver is audio_receiver:
            for stats in (await t.receiver.getStats()).values():
                if getattr(stats, "type", None) == "inbound-rtp":
                    received += stats.packetsReceived
                    lost += max(stats.packetsLost, 0)
                    clock = 48000  # Opus: the only forwarded audio codec
                    jitter_ms = stats.jitter * 1000 / clock
        if t.sender.track is not None:
            for stats in (await t.sender.getStats()).values():
                if getattr(stats, "type", None) == "remote-inbound-rtp":
                    loss_down.append(stats.fractionLost / 256)
                    if stats.roundTripTime is not None:
                        rtts.append(stats.roundTripTime * 1000)
    meter = getattr(tap.receiver, "_RTCRtpReceiver__jitter_buffer", None) if tap else None
    level = getattr(meter, "audio_level", None)
    return Sample(
        at=now,
        received=received,
        lost=lost,
        jitter_ms=jitter_ms,
        loss_down=max(loss_down) if loss_down else None,
        rtt_ms=max(rtts) if rtts else None,
        level_dbov=-level[1] if level else None,
        voice=bool(level and level[0]),
        level_at=getattr(meter, "level_at", 0.0),
        media_at=tap.last_arrival if tap is not None else 0.0,
    )
