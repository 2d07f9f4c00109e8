"""Quality indicators: the pure assessment with values, then call.quality frames
from a real server and real aiortc participants on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from av import AudioFrame

from server.calls.client import CallClient, ToneAudio
from server.calls.quality import Sample, assess, grade
from tests.calls.conftest import Join


def sample(at: float, **values: Any) -> Sample:
    base: dict[str, Any] = {
        "received": 0,
        "lost": 0,
        "jitter_ms": None,
        "loss_down": None,
        "rtt_ms": None,
        "level_dbov": None,
        "voice": False,
        "level_at": 0.0,
        "media_at": 0.0,
    }
    return Sample(at=at, **{**base, **values})


def test_loss_is_measured_over_the_period() -> None:
    before = sample(10.0, received=100, lost=0, media_at=10.0)
    now = sample(12.0, received=190, lost=10, media_at=12.0, jitter_ms=3.0)
    entry = assess(before, now, since=0.0, no_media_s=5.0)
    assert entry["loss_up"] == 0.1
    assert entry["loss"] == 0.1
    assert entry["grade"] == "poor"
    assert entry["media"] is True


def test_downstream_loss_and_round_trip_count() -> None:
    now = sample(2.0, received=100, media_at=2.0, loss_down=0.03, rtt_ms=12.0)
    entry = assess(None, now, since=0.0, no_media_s=5.0)
    assert entry["loss"] == 0.03 and entry["loss_up"] == 0.0
    assert entry["rtt_ms"] == 12.0
    assert entry["grade"] == "fair"


def test_speaking_needs_a_fresh_loud_level() -> None:
    loud = sample(5.0, received=50, media_at=5.0, level_dbov=-20, level_at=4.9)
    assert assess(None, loud, since=0.0, no_media_s=5.0)["speaking"] is True
    quiet = sample(5.0, received=50, media_at=5.0, level_dbov=-90, level_at=4.9)
    assert assess(None, quiet, since=0.0, no_media_s=5.0)["speaking"] is False
    stale = sample(5.0, received=50, media_at=5.0, level_dbov=-20, level_at=3.0)
    entry = assess(None, stale, since=0.0, no_media_s=5.0)
    assert entry["speaking"] is False and entry["level_dbov"] is None


def test_no_media_once_the_delay_passed() -> None:
    # Never arrived: counted from the join.
    assert assess(None, sample(4.0), since=0.0, no_media_s=5.0)["media"] is True
    entry = assess(None, sample(6.0), since=0.0, no_media_s=5.0)
    assert entry["media"] is False and entry["grade"] == "none"
    # Arrived, then stopped.
    assert assess(None, sample(20.0, media_at=14.0), since=0.0, no_media_s=5.0)["media"] is False
    assert assess(None, sample(20.0, media_at=16.0), since=0.0, no_media_s=5.0)["media"] is True


def test_grade_takes_the_worst() -> None:
    assert grade({"loss": 0.0, "jitter_ms": 2.0, "rtt_ms": 1.0}) == "good"
    assert grade({"loss": None, "jitter_ms": 40.0, "rtt_ms": None}) == "fair"
    assert grade({"loss": 0.0, "jitter_ms": 2.0, "rtt_ms": 700.0}) == "poor"


class PausableTone(ToneAudio):
    """A tone whose sender can be stopped: no frame, no RTP, as a dead microphone."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self) -> AudioFrame:
        await self.flowing.wait()
        return await super().recv()


def last_quality(client: CallClient) -> dict[int, dict[str, Any]]:
    for frame in reversed(client.frames):
        if frame.get("type") == "call.quality":
            return {p["user"]["id"]: p for p in frame["participants"]}
    return {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings", [{"call_quality_interval_s": 0.5, "call_no_media_s": 1.5}], indirect=True
)
async def test_quality_frames_from_real_participants(open_room: Join) -> None:
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    tone = PausableTone()
    await urg.join()
    await man.join(audio=tone)

    def plausible(c: CallClient) -> bool:
        q = last_quality(c)
        return len(q) == 2 and all(
            e["media"] and e["rtt_ms"] is not None and e["loss"] is not None for e in q.values()
        )

    await urg.wait_for(plausible)
    entries = last_quality(urg)
    for entry in entries.values():
        assert entry["loss"] == 0.0  # loopback
        assert entry["rtt_ms"] > 0
        assert entry["jitter_ms"] is not None and entry["jitter_ms"] >= 0
        assert entry["grade"] in ("good", "fair")  # a loaded machine may add jitter
    # The tone (8000/32767 of full scale, about -15 dBov) is a voice.
    assert all(e["speaking"] and e["level_dbov"] > -30 for e in entries.values())

    # The manipulator's microphone stops: everyone is told their voice no longer arrives.
    man_id = next(i for i, e in entries.items() if e["user"]["display_name"] == "MAN_A")
    tone.flowing.clear()
    await urg.wait_for(lambda c: last_quality(c).get(man_id, {}).get("media") is False)
    await man.wait_for(lambda c: last_quality(c).get(man_id, {}).get("media") is False)
    stopped = last_quality(urg)
    assert stopped[man_id]["speaking"] is False
    assert stopped[man_id]["grade"] == "none"
    assert all(e["media"] for i, e in stopped.items() if i != man_id)
    # It comes back.
    tone.flowing.set()
    await urg.wait_for(lambda c: last_quality(c).get(man_id, {}).get("media") is True)
