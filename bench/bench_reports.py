"""Reports and audit figures: rendering the three formats, audit appends, verify.

    .venv/bin/python bench/bench_reports.py [--postgresql]

Prints figures; asserts nothing. SQLite runs on a temporary file, PostgreSQL
on a temporary database at TEST_POSTGRES_URL's server (dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from server.composition import app_context
from server.core import audit
from server.core.config import Settings, normalise_database_url
from server.core.migrate import upgrade
from server.reports import formats as rf
from tests.reports.test_formats import CONTENT, DIGEST

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def bench_render(n: int = 200) -> None:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        pdf = rf.render_pdf(CONTENT, DIGEST, [])
        rf.render_fhir(CONTENT, DIGEST, [], pdf)
        rf.render_dicom(CONTENT, DIGEST, [], pdf)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(
        f"render PDF+FHIR+DICOM: median {statistics.median(times):.2f} ms, "
        f"p95 {times[int(n * 0.95)]:.2f} ms ({len(pdf)} bytes of PDF)"
    )


async def bench_audit(url: str, label: str, n: int = 2000, writers: int = 8) -> None:
    settings = Settings(database_url=url, log_level="WARNING")
    async with app_context(settings) as app:
        start = time.perf_counter()
        for i in range(n // 4):
            await audit.record(app, action="exam.read", exam_id=f"e{i}", addr="127.0.0.1")
        serial = (n // 4) / (time.perf_counter() - start)

        async def writer(w: int) -> None:
            for i in range(n // writers):
                await audit.record(app, action="exam.read", exam_id=f"w{w}-{i}")

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        concurrent = n / (time.perf_counter() - start)
        async with app.db() as db:
            start = time.perf_counter()
            count, _head, broken = await audit.verify(db)
            verify = count / (time.perf_counter() - start)
        assert broken is None
    print(
        f"audit {label}: {serial:.0f} appends/s serial, {concurrent:.0f} appends/s with "
        f"{writers} concurrent writers, verify {verify:.0f} rows/s ({count} rows)"
    )


async def main(postgresql: bool) -> None:
    bench_render()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        await bench_audit(url, "SQLite")
    if postgresql:
        name = f"ti_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = normalise_database_url(PG_ADMIN.rpartition("/")[0] + "/" + name)
            await asyncio.to_thread(upgrade, url)
            await bench_audit(url, "PostgreSQL")
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgresql", action="store_true")
    asyncio.run(main(parser.parse_args().postgresql))
