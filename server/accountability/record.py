"""The exam's record: one PDF/A document for the requesting establishment
(docs/accountability.md "The exam's record").

French teleradiology charters ask both sides to keep the request, the exchanges and
the report. The record is built from the exam's event log, the source of truth,
read as the requesting establishment's staff see it (``rooms.permissions.visible``
for an urgentist: no report drafts), every step with the time of its event; the
signed report and its addenda come from their frozen canonical content. The same
facts travel inside the PDF as an associated file (``record.json``), so a program
can read them without parsing pages.

``gather`` reads SQL; ``content`` and ``render`` are pure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.permissions import visible
from rooms.types import EventKind, Role
from server.accountability.pdfa import document
from server.core.models import Exam, ExamEvent, User
from server.reports.service import Addendum, Report

PARIS = ZoneInfo("Europe/Paris")
RECORD_VERSION = 1

LABELS: dict[str, str] = {
    EventKind.EXAM_REQUESTED: "Demande d'examen",
    EventKind.EXAM_ACCEPTED: "Demande acceptée",
    EventKind.PROTOCOL_PROPOSED: "Protocole transmis",
    EventKind.PROTOCOL_ACKNOWLEDGED: "Protocole acquitté",
    EventKind.IMAGES_RECEIVED: "Images reçues",
    EventKind.EXAM_IMAGES_COMPLETE: "Acquisition terminée",
    EventKind.REPORT_DRAFT: "Brouillon de compte rendu",
    EventKind.REPORT_SIGNED: "Compte rendu signé",
    EventKind.REPORT_ADDENDUM: "Addendum signé",
    EventKind.EXAM_DELIVERED: "Compte rendu acquitté",
    EventKind.EXAM_CANCELLED: "Examen annulé",
    EventKind.ESCALATION_RAISED: "Escalade",
    EventKind.CHAT_MESSAGE: "Message",
    EventKind.CALL_STARTED: "Appel commencé",
    EventKind.CALL_ENDED: "Appel terminé",
    EventKind.PATIENT_UPDATED: "Identité patient mise à jour",
    EventKind.PATIENT_MERGED: "Identités patient fusionnées",
    EventKind.CRITICAL_COMMUNICATED: "Résultat critique communiqué",
}


@dataclass(frozen=True)
class Gathered:
    """What the record is made of, as read from SQL."""

    exam: Exam
    events: list[tuple[ExamEvent, User | None]]
    report: Report | None
    addenda: list[tuple[Addendum, User | None]]
    acknowledged_by: User | None


def iso(value: datetime | None) -> str | None:
    """The API's form of a time (``event_json``'s ``at``): ISO 8601, UTC, ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def local(value: str | None) -> str:
    if not value:
        return "-"
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S")


async def gather(db: AsyncSession, exam: Exam) -> Gathered:
    rows = (
        await db.execute(
            select(ExamEvent, User)
            .outerjoin(User, User.id == ExamEvent.author_id)
            .where(ExamEvent.exam_id == exam.id)
            .order_by(ExamEvent.seq)
        )
    ).all()
    events = [(ev, user) for ev, user in rows if visible(EventKind(ev.kind), Role.URGENTIST)]
    report = await db.get(Report, exam.id, populate_existing=True)
    addenda = (
        await db.execute(
            select(Addendum, User)
            .outerjoin(User, User.id == Addendum.signer_id)
            .where(Addendum.exam_id == exam.id)
            .order_by(Addendum.number)
        )
    ).all()
    ack_by = None
    if report is not None and report.acknowledged_by_id is not None:
        ack_by = await db.get(User, report.acknowledged_by_id)
    return Gathered(exam, list(events), report, [(a, u) for a, u in addenda], ack_by)


def _who(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "name": user.display_name, "role": user.role}


def describe(kind: str, body: dict[str, Any]) -> str:
    """One line a clinician reads for an event's body."""
    b = body or {}
    if kind == EventKind.EXAM_REQUESTED:
        return f"{b.get('modality', '')} {b.get('body_part', '')}, urgence {b.get('urgency', '')}"
    if kind == EventKind.PROTOCOL_PROPOSED:
        return str(b.get("text") or b.get("protocol_text") or b.get("protocol_id") or "")
    if kind == EventKind.IMAGES_RECEIVED:
        series = f"{b.get('modality', '')} série {b.get('series_uid', '')}"
        return f"{series} : {b.get('count', 0)} image(s)"
    if kind == EventKind.CHAT_MESSAGE:
        return str(b.get("text", ""))
    if kind == EventKind.CALL_STARTED:
        return "enregistré" if b.get("recording") else "non enregistré"
    if kind == EventKind.CALL_ENDED:
        who = ", ".join(str(p) for p in b.get("participants", []))
        return f"durée {b.get('duration_s', 0)} s ; participants : {who}"
    if kind == EventKind.ESCALATION_RAISED:
        notified = ", ".join(str(n) for n in b.get("notified", []))
        return f"niveau {b.get('level', '')} : {b.get('reason', '')} ; prévenus : {notified}"
    if kind in (EventKind.REPORT_SIGNED, EventKind.REPORT_ADDENDUM):
        critical = " ; résultat critique" if b.get("critical") else ""
        return f"SHA-256 {b.get('sha256', '')}{critical}"
    if kind == EventKind.EXAM_CANCELLED:
        return str(b.get("reason", ""))
    if kind == EventKind.CRITICAL_COMMUNICATED:
        to = f"{b.get('recipient_name', '')} ({b.get('recipient_role', '')})"
        return f"à {to}, {b.get('method', '')}"
    return ", ".join(f"{k} {v}" for k, v in sorted(b.items()) if not isinstance(v, dict | list))


def _series(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per series: the first and last announcement and the final count (the archive
    coalesces a burst of instances into growing counts)."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["kind"] != EventKind.IMAGES_RECEIVED:
            continue
        b = e["body"]
        row = out.setdefault(
            b.get("series_uid", ""),
            {
                "series_uid": b.get("series_uid"),
                "study_uid": b.get("study_uid"),
                "modality": b.get("modality"),
                "first_at": e["at"],
                "count": 0,
            },
        )
        row["last_at"] = e["at"]
        row["count"] = max(row["count"], int(b.get("count") or 0))
    return list(out.values())


def content(g: Gathered, generated_at: datetime) -> dict[str, Any]:
    """Pure: the record's facts (what ``record.json`` holds and the pages show)."""
    exam = g.exam
    events = [
        {
            "seq": ev.seq,
            "kind": ev.kind,
            "label": LABELS.get(ev.kind, ev.kind),
            "at": iso(ev.at),
            "author": _who(author),
            "body": ev.body or {},
            "text": describe(ev.kind, ev.body or {}),
        }
        for ev, author in g.events
    ]
    report: dict[str, Any] | None = None
    if g.report is not None and g.report.canonical is not None:
        signed = json.loads(g.report.canonical)
        report = {
            "sha256": g.report.sha256,
            "signed_at": signed["signed_at"],
            "signer": signed["signer"],
            "critical": bool(signed["report"].get("critical")),
            "sections": signed["report"],
            "acknowledged_at": iso(g.report.acknowledged_at),
            "acknowledged_by": _who(g.acknowledged_by),
            "critical_acknowledged": g.report.critical_acknowledged,
            "addenda": [
                {
                    "number": a.number,
                    "text": a.text,
                    "signed_at": iso(a.signed_at),
                    "signer": _who(u),
                    "sha256": a.sha256,
                }
                for a, u in g.addenda
            ],
        }
    return {
        "version": RECORD_VERSION,
        "generated_at": iso(generated_at),
        "exam": {
            "id": exam.id,
            "accession_number": exam.accession_number,
            "study_instance_uid": exam.study_instance_uid,
            "status": exam.status,
            "modality": exam.modality,
            "body_part": exam.body_part,
            "urgency": exam.urgency,
            "clinical_question": exam.clinical_question,
            "contraindications": exam.contraindications,
            "consent": exam.consent,
            "protocol_text": exam.protocol_text,
            "establishment": {"code": exam.establishment.code, "name": exam.establishment.name},
            "requester": _who(exam.requester),
            "radiologist": _who(exam.assigned_radiologist),
        },
        "patient": {
            "id": exam.patient_id,
            "name": exam.patient_name,
            "birth_date": exam.patient_birth_date.isoformat(),
            "sex": exam.patient_sex,
        },
        "events": events,
        "series": _series(events),
        "calls": [e for e in events if e["kind"] in (EventKind.CALL_STARTED, EventKind.CALL_ENDED)],
        "escalations": [e for e in events if e["kind"] == EventKind.ESCALATION_RAISED],
        "chat": [e for e in events if e["kind"] == EventKind.CHAT_MESSAGE],
        "report": report,
    }


def _name(person: dict[str, Any] | None) -> str:
    return str(person["name"]) if person else "système"


def render(facts: dict[str, Any]) -> bytes:
    """Pure: the PDF/A-3b pages of the record, with ``record.json`` attached."""
    exam, patient = facts["exam"], facts["patient"]
    pdf = document(
        title=f"Dossier d'examen {exam['accession_number']}",
        author="Teleimagerie",
        created=datetime.fromisoformat(facts["generated_at"].replace("Z", "+00:00")),
        footer=f"Dossier {exam['accession_number']} généré le {local(facts['generated_at'])}",
    )
    pdf.add_page()
    est = exam["establishment"]
    pdf.para("Dossier d'examen de téléradiologie", 15, "B", 8)
    pdf.para(f"{est['name']} ({est['code']})   N° d'accession : {exam['accession_number']}")
    pdf.para(
        f"Patient : {patient['name']}   IPP : {patient['id']}   "
        f"Né(e) le {patient['birth_date']}   Sexe : {patient['sex']}"
    )
    pdf.para("Heures de Paris ; le fichier joint record.json donne les heures UTC exactes.", 7)

    pdf.heading("Demande et consentement")
    pdf.para(f"{exam['modality']} {exam['body_part']}, urgence {exam['urgency']}")
    pdf.para(f"Demandeur : {_name(exam['requester'])}")
    pdf.para(f"Question clinique : {exam['clinical_question']}")
    pdf.para(f"Contre-indications : {exam['contraindications'] or 'aucune signalée'}")
    pdf.para(f"Consentement du patient : {'recueilli' if exam['consent'] else 'non recueilli'}")

    pdf.heading("Protocole")
    pdf.para(exam["protocol_text"] or "-")
    for e in facts["events"]:
        if e["kind"] in (EventKind.PROTOCOL_PROPOSED, EventKind.PROTOCOL_ACKNOWLEDGED):
            pdf.para(f"{local(e['at'])}  {e['label']} par {_name(e['author'])}")

    pdf.heading("Images reçues")
    for s in facts["series"] or [None]:
        if s is None:
            pdf.para("Aucune image reçue.")
            continue
        pdf.para(
            f"{s['modality']} série {s['series_uid']} : {s['count']} image(s), "
            f"du {local(s['first_at'])} au {local(s['last_at'])}"
        )

    pdf.heading("Appels")
    for e in facts["calls"] or [None]:
        pdf.para(
            f"{local(e['at'])}  {e['label']} par {_name(e['author'])} : {e['text']}"
            if e
            else "Aucun appel."
        )

    pdf.heading("Escalades")
    for e in facts["escalations"] or [None]:
        pdf.para(f"{local(e['at'])}  {e['text']}" if e else "Aucune escalade.")

    pdf.heading("Compte rendu")
    rep = facts["report"]
    if rep is None:
        pdf.para("Pas de compte rendu signé.")
    else:
        sections = rep["sections"]
        for title, key in (
            ("Indication", "indication"),
            ("Technique", "technique"),
            ("Résultats", "findings"),
            ("Conclusion", "conclusion"),
            ("Dose", "dose"),
        ):
            if sections.get(key):
                pdf.para(title, 9, "B")
                pdf.para(str(sections[key]))
        pdf.para(f"Signé le {local(rep['signed_at'])} par {_name(rep['signer'])}", 9, "B")
        pdf.para(f"SHA-256 {rep['sha256']}", 7)
        for a in rep["addenda"]:
            pdf.para(
                f"Addendum {a['number']} signé le {local(a['signed_at'])} par {_name(a['signer'])}",
                9,
                "B",
            )
            pdf.para(a["text"])
        ack = rep["acknowledged_at"]
        pdf.para(
            f"Acquitté le {local(ack)} par {_name(rep['acknowledged_by'])}"
            + (" (résultat critique pris en compte)" if rep["critical_acknowledged"] else "")
            if ack
            else "Pas encore acquitté."
        )

    pdf.heading("Chronologie")
    for e in facts["events"]:
        pdf.para(f"#{e['seq']}  {local(e['at'])}  {e['label']} ({_name(e['author'])})", 8, "B")
        if e["text"]:
            pdf.para(e["text"], 8)

    data = json.dumps(facts, sort_keys=True, ensure_ascii=False, indent=1).encode()
    pdf.embed_file(
        basename="record.json",
        bytes=data,
        desc="Les faits du dossier (JSON)",
        mime_type="application/json",
        associated_file_relationship="Data",
        compress=True,
        modification_date=pdf.creation_date,
    )
    return bytes(pdf.output())


def sha256(pdf: bytes) -> str:
    return hashlib.sha256(pdf).hexdigest()
