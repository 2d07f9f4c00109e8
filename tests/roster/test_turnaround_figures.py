"""Turnaround figures as values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.exams.turnaround import figures, percentile, summarise

T0 = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def times(**minutes: float | None) -> dict[str, datetime | None]:
    names = ("requested", "accepted", "protocol", "images_complete", "signed", "acknowledged")
    return {n: (at(minutes[n]) if minutes.get(n) is not None else None) for n in names}


def test_figures_of_a_complete_exam() -> None:
    t = times(requested=0, accepted=3, protocol=5, images_complete=20, signed=70, acknowledged=75)
    out = figures(t, 3600, at(100))
    assert out["intervals"] == {
        "to_accept": 180.0, "to_protocol": 120.0, "to_images": 900.0,
        "to_sign": 3000.0, "to_acknowledge": 300.0, "total": 4500.0,
    }  # fmt: skip
    assert out["within_sla"] is True


def test_sla_verdicts() -> None:
    late = times(requested=0, accepted=1, protocol=2, images_complete=10, signed=71)
    assert figures(late, 3600, at(80))["within_sla"] is False
    waiting = times(requested=0, accepted=1, protocol=2, images_complete=10)
    assert figures(waiting, 3600, at(69))["within_sla"] is None
    assert figures(waiting, 3600, at(71))["within_sla"] is False
    assert figures(waiting, 3600, at(71))["intervals"]["to_sign"] is None


def test_percentiles_and_summary() -> None:
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile([5, 1, 3, 2, 4], 90) == 5
    rows = [
        figures(times(requested=0, accepted=m, images_complete=10, signed=20), 3600, at(90))
        for m in (1, 2, 9)
    ]
    summary = summarise(rows)
    assert summary["exams"] == 3
    assert summary["intervals"]["to_accept"]["p50_s"] == 120.0
    assert summary["intervals"]["to_acknowledge"]["n"] == 0
    assert summary["sla"] == {"judged": 3, "met": 3, "breached": 0, "rate": 1.0}
