"""The structured stroke report (docs/stroke.md "The report"): what the radiologist
ticks, turned into the report's findings and conclusion, and the pathway's time points.

ASPECTS (Alberta Stroke Program Early CT Score) counts ten regions of the middle
cerebral artery territory on the affected side; each with early ischaemic change takes
one point off 10.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import EventKind
from server.core.models import Exam, ExamEvent

# The ten ASPECTS regions, in the order the score is read, with their French names.
ASPECTS_REGIONS: dict[str, str] = {
    "C": "noyau caudé",
    "L": "noyau lenticulaire",
    "IC": "capsule interne",
    "I": "ruban insulaire",
    "M1": "cortex M1",
    "M2": "cortex M2",
    "M3": "cortex M3",
    "M4": "cortex M4",
    "M5": "cortex M5",
    "M6": "cortex M6",
}
HAEMORRHAGE: dict[str, str] = {
    "intraparenchymal": "hématome intraparenchymateux",
    "subarachnoid": "hémorragie sous-arachnoïdienne",
    "subdural": "hématome sous-dural",
    "extradural": "hématome extradural",
    "intraventricular": "hémorragie intraventriculaire",
}
OCCLUSION: dict[str, str] = {
    "ica": "artère carotide interne",
    "ica_t": "terminaison carotidienne (T carotidien)",
    "m1": "segment M1 de l'artère cérébrale moyenne",
    "m2": "segment M2 de l'artère cérébrale moyenne",
    "m3": "branche distale (M3) de l'artère cérébrale moyenne",
    "aca": "artère cérébrale antérieure",
    "pca": "artère cérébrale postérieure",
    "vertebral": "artère vertébrale",
    "basilar": "tronc basilaire",
}
COLLATERALS = {"good": "bonne", "intermediate": "intermédiaire", "poor": "pauvre"}
SIDE = {"left": "gauche", "right": "droit"}

Volume = Annotated[float, Field(ge=0, le=2000)]


class Perfusion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    core_ml: Volume
    penumbra_ml: Volume


class StrokeFindings(BaseModel):
    """What the radiologist records of a stroke CT or MRI (docs/api.md "Reports")."""

    model_config = ConfigDict(extra="forbid")

    haemorrhage: list[Literal[tuple(HAEMORRHAGE)]] = []  # type: ignore[valid-type]
    side: Literal["left", "right"] | None = None
    aspects_regions: list[Literal[tuple(ASPECTS_REGIONS)]] = []  # type: ignore[valid-type]
    hyperdense_artery: bool = False
    occlusion: list[Literal[tuple(OCCLUSION)]] = []  # type: ignore[valid-type]
    collaterals: Literal["good", "intermediate", "poor"] | None = None
    perfusion: Perfusion | None = None

    @field_validator("haemorrhage", "aspects_regions", "occlusion")
    @classmethod
    def _no_repeat(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a value is repeated")
        return value

    @property
    def aspects(self) -> int:
        return 10 - len(self.aspects_regions)


def _side(f: StrokeFindings) -> str:
    return f" {SIDE[f.side]}" if f.side else ""


def findings_text(f: StrokeFindings) -> str:
    """The report's findings, one statement a line, in the order they are read."""
    lines = []
    if f.haemorrhage:
        lines.append(
            "Saignement intracrânien : " + ", ".join(HAEMORRHAGE[h] for h in f.haemorrhage) + "."
        )
    else:
        lines.append("Pas de saignement intracrânien.")
    regions = [
        f"{code} ({ASPECTS_REGIONS[code]})" for code in ASPECTS_REGIONS if code in f.aspects_regions
    ]
    score = f"Score ASPECTS{_side(f)} : {f.aspects}/10"
    lines.append(
        f"{score}, signes précoces d'ischémie : {', '.join(regions)}."
        if regions
        else f"{score}, pas de signe précoce d'ischémie."
    )
    lines.append(
        f"Signe de l'artère hyperdense{_side(f)}."
        if f.hyperdense_artery
        else "Pas de signe de l'artère hyperdense."
    )
    if f.occlusion:
        lines.append("Occlusion : " + ", ".join(OCCLUSION[o] for o in f.occlusion) + _side(f) + ".")
    else:
        lines.append("Pas d'occlusion artérielle proximale.")
    if f.collaterals:
        lines.append(f"Circulation collatérale {COLLATERALS[f.collaterals]}.")
    if f.perfusion:
        p = f.perfusion
        ratio = f", rapport de discordance {p.penumbra_ml / p.core_ml:.1f}" if p.core_ml else ""
        volumes = f"cœur de l'infarctus {p.core_ml:g} mL, pénombre {p.penumbra_ml:g} mL"
        lines.append(f"Perfusion : {volumes}{ratio}.")
    return "\n".join(lines)


def conclusion_text(f: StrokeFindings) -> str:
    if f.haemorrhage:
        return "AVC hémorragique : " + ", ".join(HAEMORRHAGE[h] for h in f.haemorrhage) + "."
    parts = []
    if f.occlusion:
        parts.append("Occlusion " + ", ".join(OCCLUSION[o] for o in f.occlusion) + _side(f))
    parts.append(f"ASPECTS {f.aspects}/10")
    if f.perfusion:
        parts.append(f"cœur {f.perfusion.core_ml:g} mL / pénombre {f.perfusion.penumbra_ml:g} mL")
    return "Pas de saignement. " + " ; ".join(parts) + "."


# The pathway's time points printed in the report and its PDF, in order.
TIME_POINTS: dict[str, str] = {
    "onset": "Début des symptômes",
    "last_seen_well": "Dernière fois vu sans symptôme",
    "requested": "Demande",
    "accepted": "Prise en charge par le radiologue",
    "first_image": "Première image",
    "report": "Compte rendu signé",
}


def _ts(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


async def time_points(db: AsyncSession, exam: Exam, signed_at: datetime) -> dict[str, Any] | None:
    """A stroke alert's time points as a signature seals them (UTC, second precision);
    None for an exam without an alert. The first image is the first ``images.received``
    event of the exam's log."""
    if exam.stroke_onset_kind is None:
        return None
    first = await db.scalar(
        select(func.min(ExamEvent.at)).where(
            ExamEvent.exam_id == exam.id, ExamEvent.kind == EventKind.IMAGES_RECEIVED
        )
    )
    # An unknown onset is printed as such (the "onset" line with no time).
    onset_key = "last_seen_well" if exam.stroke_onset_kind == "last_seen_well" else "onset"
    points = {
        onset_key: exam.stroke_onset_at,
        "requested": exam.created_at,
        "accepted": exam.accepted_at,
        "first_image": first,
        "report": signed_at,
    }
    return {name: _ts(at) for name, at in points.items()}
