"""Delivery of signed reports: the three formats and the archive.

Formats are rendered per request from the frozen canonical content
(``server.reports.formats``: deterministic, so the same report always gives the
same bytes). Reads are audited with the format asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb.types import Failure, KeptAside
from server.archive.context import ArchiveContext
from server.core.identity import SystemPrincipal
from server.core.models import Exam
from server.reports import formats as report_formats
from server.reports.service import Addendum, Report

log = logging.getLogger("teleimagerie.reports")


async def load_report(db: AsyncSession, exam_id: str) -> Report | None:
    return await db.get(Report, exam_id, populate_existing=True)


async def load_addenda(db: AsyncSession, exam_id: str) -> list[Addendum]:
    rows = await db.scalars(
        select(Addendum).where(Addendum.exam_id == exam_id).order_by(Addendum.number)
    )
    return list(rows.all())


def _formats_input(report: Report, addenda: list[Addendum]) -> tuple[dict, str, list[dict]]:
    assert report.canonical is not None and report.sha256 is not None
    adds = [{"content": json.loads(a.canonical), "sha256": a.sha256} for a in addenda]
    return json.loads(report.canonical), report.sha256, adds


def rendered(report: Report, addenda: list[Addendum]) -> tuple[bytes, dict, bytes]:
    """PDF, FHIR and DICOM forms of a signed report (pure, deterministic)."""
    content, digest, adds = _formats_input(report, addenda)
    pdf = report_formats.render_pdf(content, digest, adds)
    fhir = report_formats.render_fhir(content, digest, adds, pdf)
    return pdf, fhir, report_formats.render_dicom(content, digest, adds, pdf)


async def store_report_in_archive(app: ArchiveContext, exam: Exam, part10: bytes) -> bool:
    """Put the DICOM Encapsulated PDF into the exam's study in the archive,
    through the same ingest path as images, so the hospital's PACS gets it
    with the study (WADO-RS). Returns whether it was stored."""
    try:
        result = await app.ingestor.store(
            part10, SystemPrincipal(exam_id=exam.id), expected_study=exam.study_instance_uid
        )
    except Exception:
        log.exception("could not store the report of exam %s in the archive", exam.id)
        return False
    if isinstance(result, Failure | KeptAside):
        log.error(
            json.dumps(
                {
                    "event": "report.archive_failed",
                    "exam": exam.id,
                    "reason": result.reason,
                    "message": result.message,
                }
            )
        )
        return False
    async with app.db() as db:
        await db.execute(
            update(Report).where(Report.exam_id == exam.id).values(archived_at=app.now())
        )
        await db.commit()
    return True


async def archive_latest(app: ArchiveContext, exam: Exam) -> bytes:
    """Store the latest version in the archive; returns its PDF (the outbox's
    messages carry the same bytes, docs/hl7.md "Outbound")."""
    async with app.db() as db:
        report = await load_report(db, exam.id)
        assert report is not None
        addenda = await load_addenda(db, exam.id)
    pdf, _fhir, part10 = await asyncio.to_thread(rendered, report, addenda)
    await store_report_in_archive(app, exam, part10)
    return pdf
