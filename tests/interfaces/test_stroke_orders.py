"""Stroke orders over real MLLP (docs/hl7.md "Stroke orders"): an emergency order whose
OBR-31 is coded as a stroke raises the alert, with the onset (or last seen well) of its
OBX, or with the onset unknown when it gives none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from server.core.models import Exam
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code, err

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def stroke_order(
    placer: str,
    ipp: str,
    *,
    reason: str = "I63.9^Infarctus cérébral, sans précision^I10",
    observations: tuple[str, ...] = (),
    priority: str = "S",
    modality: str = "CT",
) -> str:
    """An order whose OBR-31 is ``reason`` (CWE), with extra OBX segments."""
    text = m.order(m.control_id(), placer, m.pid(ipp), priority=priority, modality=modality)
    segments = text.rstrip("\r").split("\r")
    for i, seg in enumerate(segments):
        if seg.startswith("OBR|"):
            fields = seg.split("|")
            fields[31] = reason
            segments[i] = "|".join(fields)
    segments += [f"OBX|{n}|{obs}" for n, obs in enumerate(observations, start=2)]
    return "\r".join(segments) + "\r"


def hl7_ts(at: datetime, offset: bool = True) -> str:
    return at.strftime("%Y%m%d%H%M%S%z") if offset else at.strftime("%Y%m%d%H%M")


async def exams(listener: Hl7Listener) -> list[Exam]:
    async with listener.app.read() as db:
        return list((await db.scalars(select(Exam).order_by(Exam.created_at))).unique())


async def test_witnessed_onset_raises_the_alert(hl7_listener: Hl7Listener, api_for: ApiFor) -> None:
    # A time with its offset (+01:00, the hospital's winter time).
    onset = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    paris = onset.astimezone(ZoneInfo("Europe/Paris"))
    [ack] = await hl7_listener.send(
        stroke_order("AVC-1", "IPP400", observations=(f"DTM|11368-8^Début^LN||{hl7_ts(paris)}",))
    )
    assert ack_code(ack) == "AA", str(ack)
    [exam] = await exams(hl7_listener)
    assert exam.stroke_onset_kind == "witnessed"
    assert exam.stroke_onset_at is not None
    assert exam.stroke_onset_at.replace(tzinfo=UTC) == onset
    shown = (await (await api_for("rad")).get(f"/api/exams/{exam.id}")).json()
    assert shown["stroke"]["onset_kind"] == "witnessed"
    assert shown["stroke"]["protocol_id"] == "ct-head-stroke"  # under 4 h 30
    assert shown["stroke"]["windows"]["thrombolysis_until"] == (
        (onset + timedelta(hours=4, minutes=30)).isoformat().replace("+00:00", "Z")
    )


async def test_last_seen_well_without_offset_is_the_hospitals_local_time(
    hl7_listener: Hl7Listener,
) -> None:
    seen = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    local = seen.astimezone(ZoneInfo("Europe/Paris"))
    [ack] = await hl7_listener.send(
        stroke_order(
            "AVC-2",
            "IPP401",
            reason="AVC^Alerte AVC^L",
            observations=(f"TS|LKW||{hl7_ts(local, offset=False)}",),
            modality="MR",
        )
    )
    assert ack_code(ack) == "AA", str(ack)
    [exam] = await exams(hl7_listener)
    assert exam.stroke_onset_kind == "last_seen_well"
    assert exam.stroke_onset_at is not None
    assert exam.stroke_onset_at.replace(tzinfo=UTC) == seen


async def test_no_onset_raises_the_alert_with_onset_unknown(
    hl7_listener: Hl7Listener, api_for: ApiFor
) -> None:
    [ack] = await hl7_listener.send(stroke_order("AVC-3", "IPP402"))
    assert ack_code(ack) == "AA", str(ack)
    [exam] = await exams(hl7_listener)
    assert (exam.stroke_onset_kind, exam.stroke_onset_at) == ("unknown", None)
    rad = await api_for("rad")
    shown = (await rad.get(f"/api/exams/{exam.id}")).json()["stroke"]
    assert shown["onset_at"] is None and shown["windows"] is None
    assert shown["protocol_id"] == "ct-head-stroke-perfusion"
    # It heads the worklist as every stroke alert does.
    await hl7_listener.send(m.order(m.control_id(), "CMD-40", m.pid("IPP403")))
    listed = (await rad.get("/api/exams", params={"status": "requested"})).json()["exams"]
    assert listed[0]["id"] == exam.id


async def test_a_stroke_code_without_emergency_priority_is_an_ordinary_request(
    hl7_listener: Hl7Listener,
) -> None:
    [ack] = await hl7_listener.send(stroke_order("AVC-4", "IPP404", priority="R"))
    assert ack_code(ack) == "AA", str(ack)
    [exam] = await exams(hl7_listener)
    assert (exam.urgency, exam.stroke_onset_kind) == ("scheduled", None)


async def test_an_ordinary_emergency_is_no_alert(hl7_listener: Hl7Listener) -> None:
    onset = hl7_ts(datetime.now(UTC) - timedelta(hours=1))
    [ack] = await hl7_listener.send(
        stroke_order("AVC-5", "IPP405", reason="^Céphalée", observations=(f"TS|ONSET||{onset}",))
    )
    assert ack_code(ack) == "AA", str(ack)
    [exam] = await exams(hl7_listener)
    assert exam.stroke_onset_kind is None


async def test_onset_in_the_future_is_refused_and_nothing_is_created(
    hl7_listener: Hl7Listener,
) -> None:
    future = hl7_ts(datetime.now(UTC) + timedelta(hours=2))
    [ack] = await hl7_listener.send(
        stroke_order("AVC-6", "IPP406", observations=(f"TS|ONSET||{future}",))
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("OBX^1^5", "102")
    assert await exams(hl7_listener) == []


async def test_a_malformed_onset_names_obx5(hl7_listener: Hl7Listener) -> None:
    [ack] = await hl7_listener.send(
        stroke_order("AVC-7", "IPP407", observations=("TS|ONSET||hier soir",))
    )
    assert ack_code(ack) == "AE"
    assert err(ack) == ("OBX^1^5", "102")
    assert await exams(hl7_listener) == []
