"""The outbox: reports owed to the hospitals' systems, sent until acknowledged
(docs/hl7.md "Outbound").

A signature, an addendum or a cancellation writes one row per message owed to each
active destination of the exam's establishment (:func:`enqueue`), in the
transaction of that change: the change and what it owes commit together or not at
all. The worker (:func:`deliver_due`) claims due rows, renders each message from
the frozen report (the same bytes every time: same MSH-10, same MSH-7), sends it
over MLLP with python-hl7's client and waits for the original-mode acknowledgement
(HL7 v2.5 2.9.2):

- ``AA``: acknowledged, done;
- ``AE``/``AR``: failed; an escalation goes to the coordinators, who may resend;
- no answer, a closed connection, a refused one: tried again later, with a
  growing delay; still not acknowledged ``outbox_escalate_after_s`` after it was
  written, it escalates too (once) and goes on being tried.

A claim moves ``next_attempt_at`` past the answer's time-out: that is the lease. A
worker killed between send and acknowledgement leaves the row due again once the
lease ends, and the next attempt carries the same control id, so the receiver can
tell a repeat from a new message. Per destination the rows go in the order they
were written (the original before its correction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import hl7
from hl7.mllp import open_hl7_connection
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import EventKind, Role
from server.accountability import record as exam_record
from server.core import audit
from server.core.channels import notify, room_channel
from server.core.context import AppContext
from server.core.errors import ApiError
from server.core.models import Establishment, Exam, ExamEvent, Hl7Destination, OutboxMessage
from server.exams.owed import KINDS, ORU, PENDING
from server.exams.publish import publish_events
from server.exams.service import append_event, exam_json
from server.interfaces import cda, hl7_out
from server.interfaces.identity import document_patient
from server.reports import billing
from server.reports.delivery import load_addenda, load_report
from server.reports.formats import render_pdf
from server.reports.service import Report

log = logging.getLogger("teleimagerie.outbox")

ACKNOWLEDGED, FAILED = "acknowledged", "failed"
BATCH = 200


class DestinationError(ValueError):
    """A destination that cannot be registered as given."""


def parse_kinds(raw: str) -> str:
    kinds = [k.strip().lower() for k in raw.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise DestinationError(f"kinds are oru, mdm or both; got {raw!r}")
    return ",".join(dict.fromkeys(kinds))


async def add_destination(
    db: AsyncSession,
    *,
    establishment: str,
    name: str,
    host: str,
    port: int,
    kinds: str,
    now: datetime,
    receiving_application: str | None = None,
    receiving_facility: str | None = None,
    tls: bool = False,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
) -> Hl7Destination:
    est = await db.scalar(select(Establishment).where(Establishment.code == establishment.upper()))
    if est is None:
        raise DestinationError(f"no establishment {establishment!r}")
    if not 0 < port < 65536:
        raise DestinationError("the port is 1 to 65535")
    name = name.strip()
    if not name or len(name) > 64:
        raise DestinationError("a destination name is 1 to 64 characters")
    if await db.scalar(
        select(Hl7Destination.id).where(
            Hl7Destination.establishment_id == est.id, Hl7Destination.name == name
        )
    ):
        raise DestinationError(f"{est.code} already has a destination {name!r}")
    if (tls_cert_file is None) != (tls_key_file is None):
        raise DestinationError("a client certificate needs its key, and the reverse")
    dest = Hl7Destination(
        establishment_id=est.id,
        name=name,
        host=host,
        port=port,
        kinds=parse_kinds(kinds),
        receiving_application=receiving_application or name,
        receiving_facility=receiving_facility or est.code,
        tls=tls or bool(tls_ca_file or tls_cert_file),
        tls_ca_file=tls_ca_file,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        active=True,
        created_at=now,
    )
    db.add(dest)
    await db.flush()
    return dest


# -- rendering ------------------------------------------------------------------


def _order(exam: Exam) -> hl7_out.Order:
    return hl7_out.Order(
        accession_number=exam.accession_number,
        placer_order_number=getattr(exam, "placer_order_number", None),
        study_instance_uid=exam.study_instance_uid,
        modality=exam.modality,
        body_part=exam.body_part,
        requested_at=exam.created_at.isoformat(),
        establishment_code=exam.establishment.code,
        requester_name=exam.requester.display_name,
        requester_rpps=exam.requester.professional_id,
        cancel_reason=exam.cancel_reason,
    )


def carries_record(row: OutboxMessage, exam: Exam) -> bool:
    """Whether this row carries the exam's record: an ORU of a signed report or of
    an addendum, to an establishment whose settings say ``record_with_report``."""
    return (
        row.message_type == ORU
        and row.event != EventKind.EXAM_CANCELLED
        and bool((exam.establishment.settings or {}).get("record_with_report"))
    )


def _ccam(exam_content: dict[str, Any]) -> tuple[str, str] | None:
    try:
        entry = billing.tariff_for(
            exam_content["modality"], exam_content["body_part"], billing.load_tariffs()
        )
    except LookupError:
        return None
    return str(entry["ccam"]), str(entry["label"])


PdfCache = dict[tuple[str, int], bytes]


def render(
    row: OutboxMessage,
    dest: Hl7Destination,
    exam: Exam,
    report: Report | None,
    addenda: Sequence[dict[str, Any]],
    pdfs: PdfCache | None = None,
    record_pdf: bytes = b"",
) -> hl7.Message:
    """The message of one outbox row (pure: the same row gives the same text).
    ``pdfs`` keeps the signed PDF of each report version rendered in a batch: the
    ORU and the MDM of one version carry the same bytes, rendered once.
    ``record_pdf``: the exam's record, carried by the ORU when the establishment
    asks for it (docs/accountability.md)."""
    import json

    header = hl7_out.Header(
        control_id=row.control_id,
        at=row.created_at,
        sending_facility=hl7_out.SENDING_APPLICATION,
        receiving_application=dest.receiving_application,
        receiving_facility=dest.receiving_facility,
    )
    patient = document_patient(exam)
    order = _order(exam)
    if row.event == EventKind.EXAM_CANCELLED:
        return hl7_out.oru_r01(header, patient, order, None)
    assert report is not None and report.canonical is not None and report.sha256 is not None
    content = json.loads(report.canonical)
    upto = list(addenda[: row.version])
    pdfs = {} if pdfs is None else pdfs
    key = (report.sha256, len(upto))
    if key not in pdfs:
        pdfs[key] = render_pdf(content, report.sha256, upto)
    pdf = pdfs[key]
    if row.message_type == ORU:
        signed = hl7_out.SignedReport(
            content=content, sha256=report.sha256, addenda=upto, pdf=pdf, record_pdf=record_pdf
        )
        return hl7_out.oru_r01(header, patient, order, signed)
    est = exam.establishment
    document = cda.build(
        content=content,
        sha256=report.sha256,
        addenda=upto,
        pdf=pdf,
        patient=patient,
        establishment=cda.Establishment(est.code, est.name, est.finess),
        ccam=_ccam(content["exam"]),
    )
    _set, doc_id, parent = cda.document_ids(report.sha256, len(upto))
    latest = upto[-1]["content"] if upto else content
    return hl7_out.mdm(
        header,
        patient,
        order,
        hl7_out.Document(
            document_id=doc_id,
            parent_id=parent,
            cda=document,
            signed_at=latest["signed_at"],
            signer=latest["signer"],
        ),
    )


async def prepare(
    app: AppContext, rows: list[OutboxMessage], pdfs: PdfCache | None = None
) -> dict[int, str]:
    """Render the rows that have no payload yet and store their text before any of
    them is sent: every later attempt sends these stored bytes, whatever code runs
    then. Returns why each row that could not be rendered failed."""
    import json

    todo = [r for r in rows if r.payload is None]
    failed: dict[int, str] = {}
    if not todo:
        return failed
    pdfs = {} if pdfs is None else pdfs
    texts: dict[int, str] = {}
    loaded: dict[str, tuple[Exam, Report | None, list[dict[str, Any]]]] = {}
    dests: dict[int, Hl7Destination] = {}
    records: dict[str, bytes] = {}  # exam id -> its record, for the ORUs that carry it
    carried: dict[int, str] = {}  # row id -> the exam whose record it carries
    async with app.read() as db:
        for row in todo:
            try:
                if row.destination_id not in dests:
                    dests[row.destination_id] = await db.get_one(Hl7Destination, row.destination_id)
                if row.exam_id not in loaded:  # the ORU and the MDM of an exam: read once
                    addenda = [
                        {"content": json.loads(a.canonical), "sha256": a.sha256}
                        for a in await load_addenda(db, row.exam_id)
                    ]
                    loaded[row.exam_id] = (
                        await db.get_one(Exam, row.exam_id),
                        await load_report(db, row.exam_id),
                        addenda,
                    )
                exam, report, addenda = loaded[row.exam_id]
                dest = dests[row.destination_id]
                attached = b""
                if carries_record(row, exam):
                    if row.exam_id not in records:
                        facts = exam_record.content(await exam_record.gather(db, exam), app.now())
                        records[row.exam_id] = await asyncio.to_thread(exam_record.render, facts)
                    attached = records[row.exam_id]
                    carried[row.id] = row.exam_id
                message = await asyncio.to_thread(
                    render, row, dest, exam, report, addenda, pdfs, attached
                )
                texts[row.id] = str(message)
            except Exception as exc:
                log.exception("outbox row %s could not be rendered", row.id)
                failed[row.id] = f"not rendered: {type(exc).__name__}: {exc}"
    async with app.db() as db:
        for row_id, text in texts.items():
            await db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.payload.is_(None))
                .values(payload=text)
            )
        # What is stored is what goes: another process may have stored it first.
        result = await db.execute(
            select(OutboxMessage.id, OutboxMessage.payload).where(OutboxMessage.id.in_(list(texts)))
        )
        stored: dict[int, str | None] = {row_id: payload for row_id, payload in result}
        # The hash of each record that leaves, in the audit trail (only the text
        # this process stored is the one sent).
        await audit.record_many(
            db,
            [
                audit.make_entry(
                    action="record.delivered",
                    exam_id=exam_id,
                    at=app.now(),
                    detail={
                        "sha256": exam_record.sha256(records[exam_id]),
                        "bytes": len(records[exam_id]),
                        "delivery": row_id,
                    },
                )
                for row_id, exam_id in carried.items()
                if row_id in texts and stored.get(row_id) == texts[row_id]
            ],
        )
        await db.commit()
    for row in todo:
        if stored.get(row.id) is not None:
            row.payload = stored[row.id]
    return failed


async def prerender(app: AppContext, exam_id: str, pdf: bytes) -> None:
    """Render the messages a signature or an addendum just owed, in the web process
    that has the signed PDF in hand, so that the sender only sends. Best effort: the
    change is committed, and a row left without its text is rendered by the sender."""
    try:
        async with app.read() as db:
            rows = list(
                (
                    await db.scalars(
                        select(OutboxMessage).where(
                            OutboxMessage.exam_id == exam_id,
                            OutboxMessage.status == PENDING,
                            OutboxMessage.payload.is_(None),
                        )
                    )
                ).all()
            )
            report = await load_report(db, exam_id)
            versions = len(await load_addenda(db, exam_id))
        if rows and report is not None and report.sha256 is not None:
            await prepare(app, rows, {(report.sha256, versions): pdf})
    except Exception:
        log.exception("pre-rendering the messages of exam %s failed", exam_id)


# -- sending ---------------------------------------------------------------------


def tls_context(dest: Hl7Destination) -> ssl.SSLContext | None:
    if not dest.tls:
        return None
    context = ssl.create_default_context(cafile=dest.tls_ca_file)
    if dest.tls_cert_file:
        context.load_cert_chain(dest.tls_cert_file, dest.tls_key_file)
    return context


class Link:
    """One open MLLP connection to a destination, reused while it works."""

    def __init__(self, dest: Hl7Destination) -> None:
        self.dest = dest
        self.reader: Any = None
        self.writer: Any = None

    async def send(self, text: str, timeout: float) -> hl7.Message:
        """Send one message and wait for its acknowledgement (original mode)."""
        if self.writer is None:
            context = tls_context(self.dest)
            self.reader, self.writer = await asyncio.wait_for(
                open_hl7_connection(
                    self.dest.host,
                    self.dest.port,
                    encoding="utf-8",
                    ssl=context,
                    server_hostname=self.dest.host if context else None,
                ),
                timeout,
            )
        self.writer.writemessage(hl7.parse(text))
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readmessage(), timeout)

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def backoff_s(attempts: int, base: float, cap: float) -> float:
    """The wait after the ``attempts``-th failed try: doubling, capped."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass
class Outcome:
    row_id: int
    status: str  # acknowledged | failed | retry
    ack_code: str | None = None
    error: str | None = None


async def claim(app: AppContext, now: datetime, limit: int = BATCH) -> list[OutboxMessage]:
    """Take the due rows (their lease: the answer's time-out and some margin).
    Two workers never get the same row: the UPDATE re-checks that it is still due."""
    lease = now + timedelta(seconds=lease_s(app.settings))
    async with app.read() as db:  # most polls find nothing: no write lock for them
        ids = (
            await db.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.id)
                .limit(limit)
            )
        ).all()
    if not ids:
        return []
    async with app.db() as db:
        taken = (
            await db.scalars(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id.in_(ids),
                    OutboxMessage.status == PENDING,
                    OutboxMessage.next_attempt_at <= now,
                )
                .values(
                    next_attempt_at=lease,
                    attempts=OutboxMessage.attempts + 1,
                    last_attempt_at=now,
                )
                .returning(OutboxMessage)
                .execution_options(synchronize_session=False)
            )
        ).all()
        await db.commit()
    return sorted(taken, key=lambda r: r.id)


async def _send_all(
    app: AppContext, rows: list[OutboxMessage], links: dict[int, Link]
) -> list[Outcome]:
    """Send one destination's rows in order; after a transport failure the rest wait."""
    timeout = app.settings.outbox_ack_timeout_s
    outcomes: list[Outcome] = []
    for i, row in enumerate(rows):
        if row.payload is None:
            continue  # not rendered: its outcome is written by deliver_due
        link = links.get(row.destination_id)
        if link is None:
            async with app.read() as db:
                dest = await db.get_one(Hl7Destination, row.destination_id)
            link = links[row.destination_id] = Link(dest)
        try:
            ack = await link.send(row.payload, timeout)
            code, acked, why = hl7_out.acknowledgement(ack)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
            await link.close()
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            outcomes += [Outcome(r.id, "retry", None, error) for r in rows[i:]]
            break
        if acked != row.control_id:
            # Not the answer to this message (a stale answer on a reused link): start over.
            await link.close()
            outcomes += [Outcome(r.id, "retry", None, f"ACK for {acked!r}") for r in rows[i:]]
            break
        if code in ("AA", "CA"):
            outcomes.append(Outcome(row.id, ACKNOWLEDGED, code))
        else:
            outcomes.append(Outcome(row.id, FAILED, code, why or f"answered {code}"))
    return outcomes


async def deliver_due(app: AppContext, links: dict[int, Link] | None = None) -> int:
    """Claim, send and record one batch; returns how many rows were claimed."""
    now = app.now()
    rows = await claim(app, now)
    if not rows:
        return 0
    own = links is None
    links = {} if links is None else links
    unrendered = await prepare(app, rows)
    by_dest: dict[int, list[OutboxMessage]] = {}
    for row in rows:
        by_dest.setdefault(row.destination_id, []).append(row)
    try:
        results = await asyncio.gather(*(_send_all(app, rs, links) for rs in by_dest.values()))
    finally:
        if own:
            for link in links.values():
                await link.close()
    outcomes = [o for group in results for o in group]
    outcomes += [Outcome(row_id, FAILED, None, why) for row_id, why in unrendered.items()]
    await record(app, {r.id: r for r in rows}, outcomes)
    return len(rows)


def _audit_entry(row: OutboxMessage, out: Outcome, now: datetime) -> audit.AuditEntry:
    return audit.AuditEntry(
        at=now,
        action=f"hl7.{out.status}",
        exam_id=row.exam_id,
        outcome="ok" if out.status == ACKNOWLEDGED else "failed",
        detail={
            "control_id": row.control_id,
            "message_type": row.message_type,
            "destination_id": row.destination_id,
            "ack_code": out.ack_code,
            "error": out.error,
        },
    )


async def record(app: AppContext, rows: dict[int, OutboxMessage], outcomes: list[Outcome]) -> None:
    """Write what each attempt gave, in one transaction with its audit rows and the
    escalations it raises (refusals, long silences): a row is never marked failed
    without the coordinators' escalation committed with it."""
    now = app.now()
    silence = timedelta(seconds=app.settings.outbox_escalate_after_s)
    raised: list[tuple[ExamEvent, dict[str, Any]]] = []
    entries: list[audit.AuditEntry] = []
    acked = [o for o in outcomes if o.status == ACKNOWLEDGED]
    async with app.db() as db:
        done: set[int] = set()
        for code in sorted({str(o.ack_code) for o in acked}):  # the common case: one statement
            ids = [o.row_id for o in acked if o.ack_code == code]
            updated = await db.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.status == PENDING)
                .values(status=ACKNOWLEDGED, ack_code=code, acknowledged_at=now, last_error=None)
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
            done.update(updated.all())
        # A row not updated was acknowledged meanwhile by another worker (after a lease
        # ran out): its audit row is theirs.
        entries += [_audit_entry(rows[o.row_id], o, now) for o in acked if o.row_id in done]
        for out in outcomes:
            if out.status == ACKNOWLEDGED:
                continue
            row = rows[out.row_id]
            reason = None
            if out.status == FAILED:
                values: dict[str, Any] = {
                    "status": FAILED,
                    "ack_code": out.ack_code,
                    "last_error": out.error,
                    "escalated_at": now,
                }
                reason = "delivery_refused"
            else:
                wait = backoff_s(
                    row.attempts, app.settings.outbox_retry_base_s, app.settings.outbox_retry_max_s
                )
                values = {"next_attempt_at": now + timedelta(seconds=wait), "last_error": out.error}
                if row.escalated_at is None and now - row.created_at >= silence:
                    values["escalated_at"] = now
                    reason = "delivery_silent"
            changed = await db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, OutboxMessage.status == PENDING)
                .values(**values)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            if out.status == FAILED:
                entries.append(_audit_entry(row, out, now))
            if reason is not None:
                raised.append(await escalation(db, row, reason, out.error or "", now))
        await audit.record_many(db, entries)
        await db.commit()
    for event, body in raised:
        try:
            async with app.read() as db:
                exam = await db.get_one(Exam, event.exam_id)
                exam_body = exam_json(exam, app.settings)
            await publish_events(app, exam, [event])
            await notify(app, "escalation.raised", exam_body, body, roles=[Role.COORDINATOR])
        except Exception:  # committed: the room and the worklists catch up on reload
            log.exception("announcing the escalation of exam %s failed", event.exam_id)
    await announce(app, *dict.fromkeys(rows[o.row_id].exam_id for o in outcomes))


async def escalation(
    db: AsyncSession, row: OutboxMessage, reason: str, why: str, now: datetime
) -> tuple[ExamEvent, dict[str, Any]]:
    """An escalation in the exam's room for the coordinators (docs/hl7.md
    "Outbound"), in the caller's transaction; keyed by row and attempt, so that it
    is written once however many times the attempt is recorded."""
    dest = await db.get_one(Hl7Destination, row.destination_id)
    body = {
        "level": 3,
        "reason": reason,
        "notified": [str(Role.COORDINATOR)],
        "deadline": None,
        "delivery": {
            "id": row.id,
            "control_id": row.control_id,
            "message_type": row.message_type,
            "destination": dest.name,
            "error": why,
        },
    }
    event = await append_event(
        db,
        row.exam_id,
        EventKind.ESCALATION_RAISED,
        None,
        body,
        now,
        client_id=f"delivery:{row.id}:{row.attempts}",
    )
    return event, body


# -- state for people --------------------------------------------------------------


def delivery_json(row: OutboxMessage, dest: Hl7Destination | None = None) -> dict[str, Any]:
    def ts(value: datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    if row.status == PENDING:
        state = (
            "retrying"
            if row.attempts > 1 or row.last_error
            else ("sent" if row.attempts else "pending")
        )
    else:
        state = row.status
    return {
        "id": row.id,
        "exam_id": row.exam_id,
        "destination": {"id": row.destination_id, "name": dest.name if dest else None},
        "message_type": row.message_type,
        "event": row.event,
        "version": row.version,
        "control_id": row.control_id,
        "state": state,
        "attempts": row.attempts,
        "ack_code": row.ack_code,
        "last_error": row.last_error,
        "created_at": ts(row.created_at),
        "last_attempt_at": ts(row.last_attempt_at),
        "next_attempt_at": ts(row.next_attempt_at) if row.status == PENDING else None,
        "acknowledged_at": ts(row.acknowledged_at),
        "escalated_at": ts(row.escalated_at),
    }


async def deliveries(
    db: AsyncSession,
    *,
    exam_id: str | None = None,
    exam_ids: list[str] | None = None,
    open_only: bool = False,
    limit: int = 500,
) -> list[dict[str, Any]]:
    stmt = (
        select(OutboxMessage, Hl7Destination, Exam.accession_number)
        .join(Hl7Destination, Hl7Destination.id == OutboxMessage.destination_id)
        .join(Exam, Exam.id == OutboxMessage.exam_id)
    )
    if exam_id is not None:
        stmt = stmt.where(OutboxMessage.exam_id == exam_id)
    if exam_ids is not None:
        stmt = stmt.where(OutboxMessage.exam_id.in_(exam_ids))
    if open_only:
        stmt = stmt.where(OutboxMessage.status != ACKNOWLEDGED)
    rows = await db.execute(stmt.order_by(OutboxMessage.id).limit(limit))
    return [
        {**delivery_json(row, dest), "accession_number": accession} for row, dest, accession in rows
    ]


async def announce(app: AppContext, *exam_ids: str) -> None:
    """Each exam's deliveries to its room (frame ``delivery``, docs/api.md)."""
    if not exam_ids:
        return
    async with app.read() as db:
        items = await deliveries(db, exam_ids=list(exam_ids), limit=100 * len(exam_ids))
    by_exam: dict[str, list[dict[str, Any]]] = {exam_id: [] for exam_id in exam_ids}
    for item in items:
        by_exam[item["exam_id"]].append(item)
    await app.bus.publish_many(
        [
            (room_channel(exam_id), {"type": "delivery", "exam_id": exam_id, "deliveries": found})
            for exam_id, found in by_exam.items()
        ]
    )


def lease_s(settings: Any) -> float:
    """How long a claimed row is left to the worker that claimed it."""
    return float(settings.outbox_ack_timeout_s * 2 + 1)


async def resend(db: AsyncSession, delivery_id: int, now: datetime, settings: Any) -> OutboxMessage:
    """A failed (or waiting) delivery due again now, under its own control id. Not
    while an attempt may be in flight (within the lease of its last attempt): the
    resend would race it."""
    row = await db.get(OutboxMessage, delivery_id)
    if row is None:
        raise ApiError(404, "not_found", "no such delivery")
    if row.status == ACKNOWLEDGED:
        raise ApiError(409, "already_acknowledged", "the destination has acknowledged it")
    last = row.last_attempt_at
    if (
        row.status == PENDING
        and last is not None
        and now < last + timedelta(seconds=lease_s(settings))
    ):
        raise ApiError(
            409, "delivery_in_flight", "an attempt is under way; try again in a few seconds"
        )
    same_attempt = (
        OutboxMessage.last_attempt_at.is_(None)
        if last is None
        else OutboxMessage.last_attempt_at == last
    )
    done = await db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status != ACKNOWLEDGED, same_attempt)
        .values(status=PENDING, next_attempt_at=now, escalated_at=None)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(409, "delivery_in_flight", "an attempt started meanwhile; try again")
    await db.flush()
    await db.refresh(row)
    return row


# -- the loop ---------------------------------------------------------------------------


async def outbox_loop(app: AppContext, stop: asyncio.Event) -> None:
    """Send what is due until ``stop`` is set (the worker; the web process with the
    memory engine). Connections stay open between batches."""
    links: dict[int, Link] = {}
    poll = app.settings.outbox_poll_s
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if await deliver_due(app, links) == BATCH:
                    continue
            except Exception:
                log.exception("outbox iteration failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, poll - (time.monotonic() - started)))
    finally:
        for link in links.values():
            await link.close()
