"""The stroke alert: its treatment windows and the protocol it preselects (docs/stroke.md).

Pure functions of the time of onset (or of the time the patient was last seen well,
which the windows count from when onset was not witnessed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from server.exams.turnaround import percentile

OnsetKind = Literal["witnessed", "last_seen_well"]

# The windows counted from onset (docs/stroke.md "The clock"): intravenous thrombolysis
# up to 4 h 30, thrombectomy up to 6 h, and up to 24 h in patients selected on imaging.
THROMBOLYSIS = timedelta(hours=4, minutes=30)
THROMBECTOMY = timedelta(hours=6)
THROMBECTOMY_SELECTED = timedelta(hours=24)

# The protocols of server/data/protocols.json a stroke alert preselects.
CT_EARLY = "ct-head-stroke"  # non-contrast CT + CT angiography
CT_LATE = "ct-head-stroke-perfusion"  # the same + perfusion: onset unknown or late
MR = "mr-brain-stroke"


def windows(onset_at: datetime) -> dict[str, datetime]:
    return {
        "thrombolysis_until": onset_at + THROMBOLYSIS,
        "thrombectomy_until": onset_at + THROMBECTOMY,
        "thrombectomy_selected_until": onset_at + THROMBECTOMY_SELECTED,
    }


def protocol_for(
    modality: str, kind: str, onset_at: datetime | None, requested_at: datetime
) -> str:
    """The protocol preselected for the radiologist: the MRI one for an MR request;
    for CT, perfusion is added when onset was not witnessed (last seen well, or
    unknown) or is past the thrombolysis window at the time of the request."""
    if modality == "MR":
        return MR
    late = kind != "witnessed" or onset_at is None or requested_at - onset_at > THROMBOLYSIS
    return CT_LATE if late else CT_EARLY


def stroke_json(
    modality: str, kind: str | None, onset_at: datetime | None, requested_at: datetime
) -> dict[str, Any] | None:
    """The exam JSON's ``stroke`` (docs/rooms.md "The exam object"); None without an alert.
    An alert whose onset is unknown (an order that gave no time) has ``onset_at`` and
    ``windows`` null: no window can be counted."""
    if kind is None:
        return None

    def ts(value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    return {
        "onset_at": ts(onset_at) if onset_at else None,
        "onset_kind": kind,
        "windows": ({name: ts(at) for name, at in windows(onset_at).items()} if onset_at else None),
        "protocol_id": protocol_for(modality, kind, onset_at, requested_at),
    }


# The monthly stroke figures (docs/stroke.md "Figures"): interval name -> (from, to).
STROKE_INTERVALS = {
    "onset_to_request": ("onset", "requested"),
    "request_to_first_image": ("requested", "first_image"),
    "first_image_to_report": ("first_image", "reported"),
}


def stroke_summary(rows: list[dict[str, datetime | None]]) -> dict[str, Any]:
    """Pure: the number of alerts and p50/p90 (nearest rank, seconds) of each interval
    over some alerts' time points; an interval still open is left out of its figures."""
    out: dict[str, Any] = {"alerts": len(rows), "intervals": {}}
    for name, (start, end) in STROKE_INTERVALS.items():
        values = [
            (b - a).total_seconds()
            for r in rows
            if (a := r.get(start)) is not None and (b := r.get(end)) is not None
        ]
        out["intervals"][name] = {
            "n": len(values),
            "p50_s": percentile(values, 50),
            "p90_s": percentile(values, 90),
        }
    return out
