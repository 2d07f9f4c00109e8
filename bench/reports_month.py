"""The monthly site report of an establishment with 3,000 exams in the month.

    .venv/bin/python bench/reports_month.py [--exams 3000] [--runs 5] [--postgresql]

Seeds one month (server/accountability/sample.py: exams, their event logs, reports,
escalations) for one establishment, starts the real server (uvicorn on a loopback
port), logs a coordinator in and times ``GET /api/stats/monthly`` (the JSON) and
``GET /api/stats/monthly.pdf`` (the PDF/A with its five charts) over real HTTP,
each printed separately with the load average beside. Prints figures; asserts
nothing. SQLite runs on a temporary file, PostgreSQL on a temporary database at
TEST_POSTGRES_URL's server (dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from server.accountability.monthly import month_bounds  # noqa: E402
from server.accountability.sample import seed_month  # noqa: E402
from server.accounts.service import add_establishment, add_user  # noqa: E402
from server.composition import app_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.exams.service import escalation_policy  # noqa: E402
from server.testing import LiveServer  # noqa: E402

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MONTH = "2026-10"
PASSWORD = "bench-password-42"  # noqa: S105  (a throwaway database)


async def prepare(settings: Settings, exams: int) -> float:
    async with app_context(settings) as app, app.db() as db:
        est = await add_establishment(app, db, "BENCH", "Hôpital du banc")
        urg = await add_user(app, db, "urg", PASSWORD, "urgentist", "BENCH", "URG")
        rad = await add_user(app, db, "rad", PASSWORD, "radiologist", None, "RAD")
        await add_user(app, db, "coord", PASSWORD, "coordinator", None, "COORD")
        start, end = month_bounds(MONTH)
        began = time.perf_counter()
        await seed_month(
            db,
            establishment_id=est.id,
            requester_id=urg.id,
            radiologist_id=rad.id,
            start=start,
            end=end,
            count=exams,
            policy=escalation_policy(settings),
        )
        await db.commit()
        return time.perf_counter() - began


def timed(client: httpx.Client, url: str, runs: int) -> tuple[list[float], list[float], int]:
    """Wall time and this process's CPU time per request (the server runs in a thread
    of this process: its CPU plus the client's, which only reads the answer)."""
    times, cpu, size = [], [], 0
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        resp = client.get(url, params={"establishment": "BENCH", "month": MONTH})
        times.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
        resp.raise_for_status()
        size = len(resp.content)
    return times, cpu, size


def measure(settings: Settings, label: str, exams: int, runs: int) -> None:
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        token = client.post("/api/session", json={"username": "coord", "password": PASSWORD})
        client.headers["Authorization"] = f"Bearer {token.json()['token']}"
        for name, url in (("JSON", "/api/stats/monthly"), ("PDF", "/api/stats/monthly.pdf")):
            timed(client, url, 1)  # warm: imports, matplotlib's font cache, prepared queries
            load = os.getloadavg()
            times, cpu, size = timed(client, url, runs)
            print(
                f"{label}: monthly report {name} of {exams} exams over HTTP: "
                f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
                f"CPU median {statistics.median(cpu):.0f} ms "
                f"({runs} runs, {size} bytes); load average {load[0]:.2f} {load[1]:.2f}"
            )


async def run(url: str, label: str, exams: int, runs: int, tmp: Path) -> None:
    await asyncio.to_thread(upgrade, url)
    settings = Settings(database_url=url, log_level="WARNING", dicom_storage=tmp / "dicom")
    seeded = await prepare(settings, exams)
    print(f"{label}: seeded {exams} exams in {seeded:.1f} s ({datetime.now(UTC):%H:%M} UTC)")
    await asyncio.to_thread(measure, settings, label, exams, runs)


async def main(exams: int, runs: int, postgresql: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await run(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "SQLite", exams, runs, Path(tmp))
        if postgresql:
            name = f"ti_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = normalise_database_url(PG_ADMIN.rpartition("/")[0] + "/" + name)
                await run(url, "PostgreSQL", exams, runs, Path(tmp))
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exams", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.exams, args.runs, args.postgresql))
