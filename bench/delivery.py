"""Reports to the hospitals (docs/benchmarks.md "Deliveries"; docs/hl7.md "Outbound").

Two modes, each against a real MLLP receiver on loopback (python-hl7's server, which
acknowledges every message with AA at once):

- ``latency``: a real server (uvicorn, memory engine, so the web process sends the
  outbox itself, as ``teleimagerie serve`` does without Redis) and ``--reports``
  signatures through ``POST /api/exams/{id}/report/sign``, one every
  ``--interval`` seconds. Latency = the row's ``acknowledged_at`` - its
  ``created_at`` (the signing transaction's time), both from the server's clock:
  signature committed to AA recorded. Target: p99 < 2 s.
- ``throughput``: ``--reports`` signed reports written straight to SQL (the
  signature path is bypassed: a shortcut, labelled as such), their ORU and MDM rows
  enqueued, then one outbox loop drains them: first pass = render (the PDF, the
  CDA) + send + record; second pass = the same rows due again with their stored
  payloads (what retries cost): send + record. Target: >= 200 deliveries/s.

    .venv/bin/python -m bench.delivery latency --reports 100 --interval 0.2
    .venv/bin/python -m bench.delivery throughput --reports 1000
    (DATABASE_URL to use PostgreSQL; default a fresh SQLite file)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from hl7.mllp import start_hl7_server
from sqlalchemy import select, update

from bench.common import percentile
from server.accounts.service import add_establishment, add_user
from server.composition import core_context
from server.core.config import Settings, normalise_database_url
from server.core.migrate import upgrade
from server.core.models import Exam, OutboxMessage, User
from server.exams import owed
from server.exams.service import new_accession, new_study_uid
from server.interfaces import outbox
from server.reports.service import Report, canonical_bytes, sha256_hex, signed_content
from server.testing import LiveServer, free_port

PASSWORD = "bench-password-2026"  # noqa: S105  (a throw-away account)
DRAFT = {
    "indication": "Céphalée brutale : hémorragie méningée ?",
    "technique": "Scanner cérébral sans injection.",
    "findings": "Pas d'hyperdensité spontanée. Pas d'effet de masse. Ventricules normaux.",
    "conclusion": "Pas d'hémorragie méningée visible.",
    "dose": "PDL : 850 mGy.cm",
    "critical": False,
}


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self.server: asyncio.Server | None = None

    async def _client(self, reader: Any, writer: Any) -> None:
        try:
            while True:
                message = await reader.readmessage()
                self.count += 1
                writer.writemessage(message.create_ack("AA"))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start(self) -> None:
        self.server = await start_hl7_server(self._client, "127.0.0.1", self.port, encoding="utf-8")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def make_settings(tmp: Path) -> Settings:
    url = normalise_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    )
    return Settings(
        database_url=url,
        dicom_storage=tmp / "dicom",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        log_level="WARNING",
    )


async def seed(settings: Settings, reports: int, port: int, signed: bool) -> list[str]:
    """An establishment with a destination, the users, and ``reports`` exams whose
    images are complete, each with a draft (or, ``signed``, a signed report)."""
    now = datetime.now(UTC)
    ids = []
    async with core_context(settings) as app, app.db() as db:
        await add_establishment(app, db, "BENCH", "Hôpital du banc", "750000001")
        for username, role, est in (("urg", "urgentist", "BENCH"), ("rad", "radiologist", None)):
            await add_user(app, db, username, PASSWORD, role, est, username.upper(), "10001234567")
        await outbox.add_destination(
            db,
            establishment="BENCH",
            name="DPI",
            host="127.0.0.1",
            port=port,
            kinds="oru,mdm",
            now=now,
        )
        await db.flush()
        urg = await db.scalar(select(User).where(User.username == "urg"))
        rad = await db.scalar(select(User).where(User.username == "rad"))
        assert urg is not None and rad is not None and urg.establishment_id is not None
        for _ in range(reports):
            exam = Exam(
                establishment_id=urg.establishment_id,
                requester_id=urg.id,
                assigned_radiologist_id=rad.id,
                status="reported" if signed else "images_complete",
                accession_number=new_accession(now),
                study_instance_uid=new_study_uid("2.25"),
                patient_id=f"IPP-{len(ids)}",
                patient_name="DUPONT^Jeanne",
                patient_birth_date=date(1948, 3, 2),
                patient_sex="F",
                modality="CT",
                body_part="HEAD",
                clinical_question=DRAFT["indication"],
                urgency="emergency",
                consent=True,
                created_at=now,
                updated_at=now,
                accepted_at=now,
                protocoled_at=now,
                protocol_ack_at=now,
                images_complete_at=now,
                reported_at=now if signed else None,
                last_seq=0,
            )
            db.add(exam)
            await db.flush()
            await db.refresh(exam)
            report = Report(
                exam_id=exam.id, author_id=rad.id, created_at=now, updated_at=now, **DRAFT
            )
            if signed:
                raw = canonical_bytes(signed_content(report, exam, rad, now))
                report.signed_at, report.signer_id = now, rad.id
                report.canonical, report.sha256 = raw.decode(), sha256_hex(raw)
            db.add(report)
            await db.flush()
            if signed:
                await owed.enqueue(db, exam, "report.signed", now)
            ids.append(exam.id)
        await db.commit()
    return ids


async def acknowledged(settings: Settings, expected: int, limit_s: float) -> list[OutboxMessage]:
    deadline = time.monotonic() + limit_s
    async with core_context(settings) as app:
        while True:
            async with app.read() as db:
                rows = list((await db.scalars(select(OutboxMessage))).all())
            if sum(r.status == "acknowledged" for r in rows) >= expected:
                return rows
            if time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)


async def latency(reports: int, interval: float) -> None:
    receiver = Receiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp))
        await asyncio.to_thread(upgrade, settings.database_url)
        ids = await seed(settings, reports, receiver.port, signed=False)
        with LiveServer(settings) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                resp = await client.post(
                    "/api/session", json={"username": "rad", "password": PASSWORD}
                )
                client.headers["Authorization"] = f"Bearer {resp.json()['token']}"
                started = time.monotonic()
                for i, exam_id in enumerate(ids):
                    await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
                    signed = await client.post(
                        f"/api/exams/{exam_id}/report/sign", json={"password": PASSWORD}
                    )
                    assert signed.status_code == 200, signed.text
                rows = await acknowledged(settings, 2 * reports, 60)
    await receiver.stop()
    done = [r for r in rows if r.acknowledged_at is not None]
    print(
        f"latency: {reports} signatures, one every {interval} s;"
        f" {len(done)}/{len(rows)} acknowledged"
    )
    for kind in (owed.ORU, owed.MDM):
        values = [
            (r.acknowledged_at - r.created_at).total_seconds() * 1000
            for r in done
            if r.message_type == kind and r.acknowledged_at is not None
        ]
        print(
            f"  {kind}: signature -> AA recorded  p50 {percentile(values, 50):.0f} ms"
            f"  p99 {percentile(values, 99):.0f} ms  max {max(values):.0f} ms"
        )
    print(f"  messages received: {receiver.count} (duplicates: {receiver.count - len(done)})")


async def drain(settings: Settings, expected: int) -> float:
    async with core_context(settings) as app:
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(outbox.outbox_loop(app, stop))
        while True:
            async with app.read() as db:
                left = await db.scalar(
                    select(OutboxMessage.id).where(OutboxMessage.status != "acknowledged").limit(1)
                )
            if left is None:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        stop.set()
        await task
    return elapsed


async def throughput(reports: int) -> None:
    receiver = Receiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp)).with_(outbox_poll_s=0.02)
        await asyncio.to_thread(upgrade, settings.database_url)
        await seed(settings, reports, receiver.port, signed=True)
        rows = 2 * reports
        first = await drain(settings, rows)
        async with core_context(settings) as app, app.db() as db:
            await db.execute(
                update(OutboxMessage).values(
                    status="pending", next_attempt_at=app.now(), acknowledged_at=None, attempts=0
                )
            )
            await db.commit()
        second = await drain(settings, rows)
    await receiver.stop()
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    print(f"throughput ({backend}; {reports} reports written straight to SQL = {rows} messages):")
    print(f"  first pass (render + send + record): {first:.1f} s, {rows / first:.0f} deliveries/s")
    print(
        f"  second pass (stored payloads: send + record): {second:.1f} s,"
        f" {rows / second:.0f} deliveries/s"
    )
    print(f"  messages received: {receiver.count} (2 passes x {rows})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--reports", type=int, default=100)
    lat.add_argument("--interval", type=float, default=0.2)
    thr = sub.add_parser("throughput")
    thr.add_argument("--reports", type=int, default=1000)
    args = parser.parse_args()
    if args.mode == "latency":
        asyncio.run(latency(args.reports, args.interval))
    else:
        asyncio.run(throughput(args.reports))


if __name__ == "__main__":
    main()
