"""The teleradiology report: draft, signature, addenda, canonical content.

A report has the four sections of a French teleradiology report (indication,
technique, results, conclusion), the dose where the modality delivers one,
and a critical-finding flag. At signature its canonical content (sorted-key
compact UTF-8 JSON of the sections, the exam and patient identifiers and the
signer) is frozen and hashed with SHA-256: that hash is the report's identity
in every delivery format (PDF, FHIR, DICOM). Changes after signature are
addenda, each signed and chained to the report and to the addendum before it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.core.identity import Person
from server.core.models import Base, Exam, User
from server.reports.stroke import StrokeFindings, conclusion_text, findings_text

TEMPLATES = Path(__file__).parent.parent / "data" / "report_templates.json"
# Modalities that deliver ionising radiation, whose report must state the dose.
DOSE_MODALITIES = frozenset({"CT", "CR", "DX"})

# What a template leaves for the radiologist to fill in: "[…]" or "[...]" (the form
# the templates use), or an ellipsis standing alone as a word ("PDL : … mGy.cm", the
# form older templates used, still in drafts started from them). An ellipsis that
# ends a word ("normal…") is prose, not a placeholder.
PLACEHOLDER = re.compile(r"\[\s*(?:…|\.{3})\s*\]|(?<!\S)(?:…|\.{3})(?!\S)")
SIGNED_FIELDS = ("indication", "technique", "findings", "conclusion", "dose")

Section = Annotated[str, StringConstraints(max_length=20000)]


class DraftBody(BaseModel):
    """``PUT /api/exams/{id}/report``: the whole draft, as the radiologist types it."""

    model_config = ConfigDict(extra="forbid")

    indication: Section = ""
    technique: Section = ""
    findings: Section = ""
    conclusion: Section = ""
    dose: Annotated[str, StringConstraints(max_length=2000)] | None = None
    critical: bool = False
    # The structured stroke report (docs/stroke.md "The report"); a blank findings or
    # conclusion sent with it is written from it.
    stroke: StrokeFindings | None = None

    def with_stroke_text(self) -> DraftBody:
        if self.stroke is None:
            return self
        update = {}
        if not self.findings.strip():
            update["findings"] = findings_text(self.stroke)
        if not self.conclusion.strip():
            update["conclusion"] = conclusion_text(self.stroke)
        return self.model_copy(update=update)


class SignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    # The author asks for a second reading (docs/review.md).
    review_requested: bool = False


class AddendumBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    critical_acknowledged: bool = False


class Report(Base):
    """One report per exam; ``signed_at`` set means frozen (no UPDATE touches it after)."""

    __tablename__ = "reports"

    exam_id: Mapped[str] = mapped_column(
        ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    indication: Mapped[str] = mapped_column(Text, default="")
    technique: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str] = mapped_column(Text, default="")
    conclusion: Mapped[str] = mapped_column(Text, default="")
    dose: Mapped[str | None] = mapped_column(Text)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    stroke: Mapped[dict[str, Any] | None]  # the structured stroke report, when filled
    template_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    signed_at: Mapped[datetime | None]
    signer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    canonical: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    critical_acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the DICOM Encapsulated PDF reached the archive; NULL otherwise.
    archived_at: Mapped[datetime | None]


class Addendum(Base):
    __tablename__ = "report_addenda"
    __table_args__ = (UniqueConstraint("exam_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("reports.exam_id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    signer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime]
    canonical: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))


def ts(value: datetime) -> str:
    """Second-precision UTC, the same on every database."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def person(user: User | Person) -> dict[str, Any]:
    return {"id": user.id, "name": user.display_name, "rpps": user.professional_id}


def report_fields(report: Report) -> dict[str, Any]:
    """What the radiologist writes: a draft shows it, a signature seals it. The
    structured stroke report is there only when filled, so other reports' content
    (and hash) is what it was."""
    fields: dict[str, Any] = {
        "indication": report.indication,
        "technique": report.technique,
        "findings": report.findings,
        "conclusion": report.conclusion,
        "dose": report.dose,
        "critical": report.critical,
    }
    if report.stroke is not None:
        fields["stroke"] = report.stroke
    return fields


def signed_content(
    report: Report,
    exam: Exam,
    signer: User,
    at: datetime,
    time_points: dict[str, Any] | None = None,
    radiation_dose: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a signature covers: enough to render every delivery format alone. A stroke
    alert's ``time_points`` (server/reports/stroke.py) are sealed with it, and so are
    the scanner's dose figures with their reference level (server/reports/dose.py)."""
    extra: dict[str, Any] = {"time_points": time_points} if time_points else {}
    if radiation_dose:
        extra["radiation_dose"] = radiation_dose
    return {
        **extra,
        "version": 1,
        "exam": {
            "id": exam.id,
            "accession_number": exam.accession_number,
            "study_instance_uid": exam.study_instance_uid,
            "modality": exam.modality,
            "body_part": exam.body_part,
            "urgency": exam.urgency,
            "requested_at": ts(exam.created_at),
            "clinical_question": exam.clinical_question,
            "establishment": {"code": exam.establishment.code, "name": exam.establishment.name},
            "requester": person(exam.requester),
        },
        "patient": {
            "id": exam.patient_id,
            "name": exam.patient_name,
            "birth_date": exam.patient_birth_date.isoformat(),
            "sex": exam.patient_sex,
        },
        "report": report_fields(report),
        "signer": person(signer),
        "signed_at": ts(at),
    }


def addendum_content(
    report_sha256: str, previous_sha256: str, number: int, text: str, signer: User, at: datetime
) -> dict[str, Any]:
    """An addendum covers the report's hash and the previous addendum's: a chain."""
    return {
        "version": 1,
        "report_sha256": report_sha256,
        "previous_sha256": previous_sha256,
        "number": number,
        "text": text,
        "signer": person(signer),
        "signed_at": ts(at),
    }


def placeholders_left(fields: Mapping[str, str | None]) -> list[str]:
    """The names of the fields, in ``SIGNED_FIELDS`` order, whose text still holds a
    template placeholder (``PLACEHOLDER``): what a signature must not seal, since
    the reader cannot tell a value that was never typed from one that was."""
    return [name for name in SIGNED_FIELDS if PLACEHOLDER.search(fields.get(name) or "")]


def missing_for_signature(report: Report, modality: str) -> list[dict[str, str]]:
    """The sections a report cannot be signed without, empty or still holding a
    template placeholder (422 ``incomplete_report`` names them; docs/reports.md)."""
    missing = [
        {"field": name, "reason": "empty", "message": "required before signing"}
        for name in ("indication", "technique", "findings", "conclusion")
        if not getattr(report, name).strip()
    ]
    if modality in DOSE_MODALITIES and not (report.dose or "").strip():
        missing.append(
            {"field": "dose", "reason": "empty", "message": f"a {modality} report states the dose"}
        )
    missing += [
        {
            "field": name,
            "reason": "placeholder",
            "message": "still holds a placeholder of the template ([…]): replace it",
        }
        for name in placeholders_left(report_fields(report))
    ]
    return missing


@cache
def templates() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(TEMPLATES.read_text(encoding="utf-8"))["templates"]
    return data


def find_templates(modality: str | None, body_part: str | None) -> list[dict[str, Any]]:
    """Templates for this modality and body part, most specific first.

    A template names its body parts (``"*"`` for any); ``None`` filters nothing.
    """
    part = body_part.strip().upper() if body_part else None
    mod = modality.strip().upper() if modality else None
    found = []
    for tpl in templates():
        if mod is not None and tpl["modality"] not in (mod, "*"):
            continue
        if part is not None and part not in tpl["body_parts"] and "*" not in tpl["body_parts"]:
            continue
        specific = (tpl["modality"] != "*") + ("*" not in tpl["body_parts"])
        found.append((-specific, tpl))
    return [tpl for _, tpl in sorted(found, key=lambda pair: pair[0])]


def draft_from_template(exam: Exam) -> dict[str, Any]:
    """The starting draft: the best template (the stroke one for a stroke alert,
    docs/stroke.md), the indication from the request."""
    found = find_templates(exam.modality, exam.body_part)
    stroke = [t for t in found if t.get("stroke_alert")] if exam.stroke_onset_kind else []
    ordinary = [t for t in found if not t.get("stroke_alert")] or found
    tpl = (stroke or ordinary)[0]
    return {
        "template_id": tpl["id"],
        "indication": exam.clinical_question,
        "technique": tpl["technique"],
        "findings": tpl["findings"],
        "conclusion": tpl["conclusion"],
        "dose": tpl.get("dose"),
        "critical": False,
    }
