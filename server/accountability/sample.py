"""A month of exams written straight to SQL, for the monthly report's tests and
benchmark (bench/reports_month.py): exams, their event logs and their reports, as
the lifecycle would have left them, drawn from a seeded random generator.

Escalations are raised where the policy's deadlines were passed, as the timers would
have raised them. A test tool shipped with the product (docs/accountability.md).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Policy
from rooms.types import EventKind
from server.core.models import Exam, ExamEvent
from server.reports.service import Report

MODALITIES = (("CT", "HEAD", 6), ("CT", "CHEST", 3), ("MR", "HEAD", 2), ("CR", "CHEST", 2))


async def seed_month(
    db: AsyncSession,
    *,
    establishment_id: int,
    requester_id: int,
    radiologist_id: int,
    start: datetime,
    end: datetime,
    count: int,
    policy: Policy,
    seed: int = 1,
) -> list[str]:
    """Write ``count`` exams requested in [start, end); returns their ids (not committed)."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    exams: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    weights = [w for *_, w in MODALITIES]
    for n in range(count):
        exam_id = str(uuid.UUID(int=rng.getrandbits(128)))
        modality, body_part, _ = rng.choices(MODALITIES, weights)[0]
        created = start + timedelta(seconds=rng.uniform(0, span - 6 * 3600))
        stroke = rng.random() < 0.05
        p = policy.for_stroke() if stroke else policy
        log: list[tuple[datetime, str, int | None, dict[str, Any]]] = [
            (created, EventKind.EXAM_REQUESTED, requester_id, {"modality": modality})
        ]
        times: dict[str, datetime | None] = dict.fromkeys(
            ("accepted", "protocoled", "ack", "complete", "signed", "delivered", "cancelled")
        )

        def escalate(
            at: datetime,
            level: int,
            reason: str,
            key: str,
            log: list[Any] = log,
            ident: str = exam_id,
        ) -> None:
            body = {"level": level, "reason": reason, "deadline": f"{ident}:{key}:{level}"}
            log.append((at, EventKind.ESCALATION_RAISED, None, body))

        t = created
        if rng.random() < 0.05:
            cancelled = t + timedelta(seconds=rng.uniform(30, 600))
            times["cancelled"] = cancelled
            log.append((cancelled, EventKind.EXAM_CANCELLED, requester_id, {}))
        else:
            wait = rng.expovariate(1 / (p.ack_timeout_s * 0.5))
            for level in (1, 2):
                if wait > level * p.ack_timeout_s:
                    at = t + timedelta(seconds=level * p.ack_timeout_s)
                    escalate(at, level, "not_accepted", "accept")
            t = times["accepted"] = t + timedelta(seconds=wait)
            log.append((t, EventKind.EXAM_ACCEPTED, radiologist_id, {}))
            t = times["protocoled"] = t + timedelta(seconds=rng.uniform(30, 400))
            log.append((t, EventKind.PROTOCOL_PROPOSED, radiologist_id, {"text": "protocole"}))
            wait = rng.expovariate(1 / (p.protocol_ack_timeout_s * 0.4))
            if wait > p.protocol_ack_timeout_s:
                at = t + timedelta(seconds=p.protocol_ack_timeout_s)
                escalate(at, 1, "protocol_not_acknowledged", "protocol_ack")
            t = times["ack"] = t + timedelta(seconds=wait)
            log.append((t, EventKind.PROTOCOL_ACKNOWLEDGED, requester_id, {}))
            t += timedelta(seconds=rng.uniform(60, 900))
            for k in range(rng.randint(1, 3)):
                body = {"modality": modality, "series_uid": f"2.25.{n}.{k}", "count": 10 * (k + 1)}
                log.append((t + timedelta(seconds=20 * k), EventKind.IMAGES_RECEIVED, None, body))
            t = times["complete"] = t + timedelta(seconds=rng.uniform(120, 900))
            log.append((t, EventKind.EXAM_IMAGES_COMPLETE, requester_id, {}))
            wait = rng.uniform(0.2, 1.3) * p.report_sla_s
            if wait > p.report_warn_s:
                escalate(t + timedelta(seconds=p.report_warn_s), 1, "report_warning", "report")
            if wait > p.report_sla_s:
                escalate(t + timedelta(seconds=p.report_sla_s), 2, "report_breach", "report")
            t = times["signed"] = t + timedelta(seconds=wait)
            critical = rng.random() < 0.12
            log.append((t, EventKind.REPORT_SIGNED, radiologist_id, {"critical": critical}))
            if rng.random() < 0.93:
                wait = rng.expovariate(1 / (p.critical_ack_timeout_s * 0.8))
                if critical and wait > p.critical_ack_timeout_s:
                    at = t + timedelta(seconds=p.critical_ack_timeout_s)
                    escalate(at, 1, "critical_not_acknowledged", "critical")
                t = times["delivered"] = t + timedelta(seconds=wait)
                log.append((t, EventKind.EXAM_DELIVERED, requester_id, {}))
            reports.append(
                {
                    "exam_id": exam_id,
                    "author_id": radiologist_id,
                    "created_at": times["complete"],
                    "updated_at": times["signed"],
                    "critical": critical,
                    "signed_at": times["signed"],
                    "signer_id": radiologist_id,
                    "sha256": f"{n:064x}",
                    "acknowledged_at": times["delivered"],
                    "acknowledged_by_id": requester_id if times["delivered"] else None,
                    "critical_acknowledged": critical and times["delivered"] is not None,
                }
            )
        log.sort(key=lambda e: e[0])
        status = (
            "cancelled"
            if times["cancelled"]
            else ("delivered" if times["delivered"] else "reported")
        )
        for seq, (at, kind, author, body) in enumerate(log, 1):
            events.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "exam_id": exam_id,
                    "seq": seq,
                    "kind": kind,
                    "author_id": author,
                    "at": at,
                    "body": body,
                }
            )
        exams.append(
            {
                "id": exam_id,
                "establishment_id": establishment_id,
                "requester_id": requester_id,
                "assigned_radiologist_id": None if times["cancelled"] else radiologist_id,
                "status": status,
                "accession_number": f"S{seed % 100:02d}{n:08d}",
                "study_instance_uid": f"2.25.{seed}.{n}.{rng.getrandbits(32)}",
                "patient_id": f"IPP{n:06d}",
                "patient_name": f"PATIENT^{n}",
                "patient_birth_date": datetime(1950, 1, 1).date(),
                "patient_sex": "F" if n % 2 else "M",
                "modality": modality,
                "body_part": body_part,
                "clinical_question": "question",
                "urgency": "emergency",
                "consent": True,
                "stroke_onset_kind": "witnessed" if stroke else None,
                "stroke_onset_at": created - timedelta(minutes=40) if stroke else None,
                "created_at": created,
                "updated_at": log[-1][0],
                "accepted_at": times["accepted"],
                "protocoled_at": times["protocoled"],
                "protocol_ack_at": times["ack"],
                "images_complete_at": times["complete"],
                "reported_at": times["signed"],
                "delivered_at": times["delivered"],
                "cancelled_at": times["cancelled"],
                "last_seq": len(log),
            }
        )
    for table, rows in ((Exam, exams), (ExamEvent, events), (Report, reports)):
        for i in range(0, len(rows), 1000):
            await db.execute(insert(table), rows[i : i + 1000])
    return [e["id"] for e in exams]
