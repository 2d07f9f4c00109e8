"""What the benchmarks share: a seeded database, server processes, memory readings."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from server.accounts.auth import hash_token
from server.composition import app_context
from server.core.config import Settings
from server.core.migrate import upgrade
from server.core.models import Establishment, Exam, ExamEvent, User, UserSession
from server.exams.service import new_accession, new_study_uid
from server.testing import Loopback, free_port

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Seed:
    exam_ids: list[str]
    tokens: dict[str, list[str]] = field(default_factory=dict)  # role -> session tokens


async def seed(settings: Settings, exams: int, sessions_per_role: int) -> Seed:
    """Exams and logged-in sessions written straight to SQL (no Argon2 per login)."""
    now = datetime.now(UTC)
    roles = ("urgentist", "manipulator", "radiologist")
    result = Seed(exam_ids=[])
    async with app_context(settings) as app, app.db() as db:
        est = Establishment(
            code="BENCH", name="Bench", contract_active=True, settings={}, created_at=now
        )
        db.add(est)
        await db.flush()
        users = {}
        for role in roles:
            user = User(
                username=f"bench-{role}",
                password_hash="!",  # noqa: S106 -- not a hash: no password opens it
                role=role,
                establishment_id=None if role == "radiologist" else est.id,
                display_name=role,
                active=True,
                created_at=now,
            )
            db.add(user)
            users[role] = user
        await db.flush()
        exam_rows, event_rows = [], []
        # 8 random digits a day: thousands of exams drawn at once would collide.
        accessions: set[str] = set()
        while len(accessions) < exams:
            accessions.add(new_accession(now))
        for accession in accessions:
            exam_id = str(uuid.uuid4())
            result.exam_ids.append(exam_id)
            exam_rows.append(
                dict(
                    id=exam_id,
                    establishment_id=est.id,
                    requester_id=users["urgentist"].id,
                    assigned_radiologist_id=users["radiologist"].id,
                    status="accepted",
                    accession_number=accession,
                    study_instance_uid=new_study_uid("2.25"),
                    patient_id="P",
                    patient_name="BENCH^Patient",
                    patient_birth_date=date(1950, 1, 1),
                    patient_sex="O",
                    modality="CT",
                    body_part="HEAD",
                    clinical_question="bench",
                    urgency="urgent",
                    consent=True,
                    created_at=now,
                    updated_at=now,
                    last_seq=1,
                )
            )
            event_rows.append(
                dict(
                    id=secrets.token_hex(16),
                    exam_id=exam_id,
                    seq=1,
                    kind="exam.requested",
                    at=now,
                    body={},
                )
            )
        for i in range(0, exams, 500):
            await db.execute(insert(Exam), exam_rows[i : i + 500])
            await db.execute(insert(ExamEvent), event_rows[i : i + 500])
        session_rows = []
        for role in roles:
            result.tokens[role] = []
            for _ in range(sessions_per_role):
                token = secrets.token_urlsafe(32)
                result.tokens[role].append(token)
                session_rows.append(
                    dict(
                        token_hash=hash_token(token),
                        user_id=users[role].id,
                        created_at=now,
                        last_seen_at=now,
                        expires_at=now + timedelta(hours=12),
                    )
                )
        for i in range(0, len(session_rows), 1000):
            await db.execute(insert(UserSession), session_rows[i : i + 1000])
        await db.commit()
    return result


def prepare_database(url: str | None, workdir: Path, fresh: bool = False) -> str:
    """The run's database, migrated: a SQLite file in ``workdir`` by default.
    ``fresh``: a PostgreSQL database is dropped and created again first, so that
    runs one after the other (bench/room_ab.py) each start empty."""
    url = url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    if fresh and url.startswith("postgresql"):
        asyncio.run(recreate(url))
    upgrade(url)
    return url


async def recreate(url: str) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database="postgres",
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()


PROFILED = """
import cProfile, runpy, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv = ["server.cli", *{argv!r}]
cProfile.run("runpy.run_module('server.cli', run_name='__main__')", {out!r})
"""


class ServerProcess(Loopback):
    """``teleimagerie serve`` in a subprocess."""

    def __init__(
        self, env: dict[str, str], profile: Path | None = None, port: int | None = None
    ) -> None:
        """``profile``: run under cProfile and write its statistics there on stop.
        ``port``: a given one (a restart on the same address), else a free one."""
        self.port = port or free_port()
        argv = ["-m", "server.cli", "serve", "--port", str(self.port)]
        if profile is not None:
            # uvicorn re-raises SIGTERM once shut down: make it an exit, so that
            # cProfile gets to write its statistics.
            argv = ["-c", PROFILED.format(out=str(profile), argv=argv[2:])]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
            cwd=ROOT,
        )

    async def ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    await client.get(self.url + "/api/me")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
