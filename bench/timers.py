"""How late do escalation timers fire? (docs/benchmarks.md "Timers").

Two modes, both with 10,000 pending timers by default and several worker loops
claiming from one engine, as `teleimagerie worker` processes do:

- ``engine``: the engine and the worker loop alone (``server.worker.timer_loop`` with
  a `fire` that records the time): what the claim loop costs.
- ``full``: 5,000 real open requests (two timers each) in a fresh SQLite database,
  rebuilt from SQL (the time is printed), then `--due` of them made due within the
  window while the rest stay pending, fired by the real ``server.exams.firing.fire``
  writing ``escalation.raised`` events; lateness is the event's time minus its deadline.

Lateness = when it fired - when it was due. Target: p99 < 1 s.

    .venv/bin/python -m bench.timers engine --timers 10000 --workers 2
    .venv/bin/python -m bench.timers full --exams 5000 --due 200 --workers 2  # 10,000 timers
    (Redis at $REDIS_URL, default redis://127.0.0.1:6379/0; keys under a fresh prefix)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from server.accounts.service import add_establishment, add_user
from server.composition import app_context
from server.core.config import Settings
from server.core.context import AppContext
from server.core.migrate import upgrade
from server.core.models import Exam, ExamEvent
from server.testing import delete_redis_prefix
from server.worker import timer_loop

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def report(name: str, lateness: list[float], expected: int) -> None:
    values = sorted(lateness)

    def q(p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000

    print(f"{name}: fired {len(values)}/{expected}")
    if values:
        print(f"  lateness p50 {q(50):.0f} ms  p95 {q(95):.0f} ms  p99 {q(99):.0f} ms"
              f"  max {values[-1] * 1000:.0f} ms")  # fmt: skip


async def run_loops(
    settings: Settings, workers: int, until: float, fire: Any = None, rebuild: bool = True
) -> None:
    """`workers` worker loops, each with its own engine connection, until `until`."""
    stop = asyncio.Event()

    async def one() -> None:
        async with app_context(settings) as app:
            await timer_loop(app, stop, fire=fire, rebuild_first=rebuild)

    tasks = [asyncio.create_task(one()) for _ in range(workers)]
    await asyncio.sleep(max(0.0, until - time.time()))
    stop.set()
    await asyncio.gather(*tasks)


async def bench_engine(args: argparse.Namespace, settings: Settings) -> None:
    fired: dict[str, float] = {}
    duplicates = 0

    async def record(_app: AppContext, key: str, payload: dict[str, Any]) -> None:
        nonlocal duplicates
        duplicates += key in fired
        fired[key] = time.time() - payload["due_at"]

    async with app_context(settings) as app:

        async def schedule(keys: range, due: list[float]) -> None:
            for first in range(keys.start, keys.stop, 50):
                batch = range(first, min(first + 50, keys.stop))
                await asyncio.gather(*(
                    app.bus.timer_schedule(f"bench:{i}", due[i], {"due_at": due[i]}) for i in batch
                ))  # fmt: skip

        # Time a sample first, so that every timer is scheduled before the first is due.
        await schedule(range(50), [time.time() + 3600.0] * 50)  # warm the connections
        t0 = time.time()
        await schedule(range(200), [t0 + 3600.0] * 200)
        lead = (time.time() - t0) / 200 * args.timers * 1.5 + 2
        start = time.time() + lead
        due = [start + random.random() * args.spread for _ in range(args.timers)]
        await schedule(range(args.timers), due)
        took = time.time() - t0
        print(f"scheduled {await app.bus.timer_count()} timers in {took:.1f} s, due over "
              f"{args.spread:.0f} s")  # fmt: skip
        if time.time() > start:
            print("  warning: scheduling overran the first due time; lateness includes it")
    await run_loops(settings, args.workers, start + args.spread + 3, record)
    report(f"engine ({args.workers} workers)", list(fired.values()), args.timers)
    print(f"  duplicates {duplicates}")


async def seed(app: AppContext, exams: int) -> list[str]:
    """`exams` open requests: two pending timers each (accept:1 and accept:2)."""
    ids = []
    async with app.db() as db:
        est = await add_establishment(app, db, "BENCH", "Bench")
        urg = await add_user(app, db, "bench_urg", "bench-password-1", "urgentist", "BENCH")
        now = datetime.now(UTC)
        for i in range(exams):
            exam = Exam(
                establishment_id=est.id,
                requester_id=urg.id,
                status="requested",
                accession_number=f"B{i:015d}",
                study_instance_uid=f"2.25.{uuid.uuid4().int}",
                patient_id=f"P{i}",
                patient_name="BENCH^Patient",
                patient_birth_date=date(1950, 1, 1),
                patient_sex="U",
                modality="CT",
                body_part="HEAD",
                clinical_question="bench",
                urgency="emergency",
                consent=True,
                created_at=now,
                updated_at=now,
                last_seq=0,
            )
            db.add(exam)
            await db.flush()
            ids.append(exam.id)
        await db.commit()
    return ids


async def bench_full(args: argparse.Namespace, settings: Settings) -> None:
    from server.exams.escalation import rebuild, sync_timers

    ack_s = 3600  # all but the chosen few stay pending through the run
    settings = settings.with_(ack_timeout_s=ack_s)
    async with app_context(settings) as app:
        ids = await seed(app, args.exams)
        t0 = time.perf_counter()
        count = await rebuild(app)
        took = time.perf_counter() - t0
        print(f"rebuilt {count} timers from SQL in {took:.2f} s ({count / took:.0f}/s)")
        # Move `--due` exams so that their first deadline falls in the window, as a
        # request made an ACK_TIMEOUT_S earlier would; the web process re-plans them.
        start = time.time() + 1.5 * took + 3
        async with app.db() as db:
            for exam_id in ids[: args.due]:
                at = datetime.fromtimestamp(start + random.random() * args.spread - ack_s, UTC)
                await db.execute(update(Exam).where(Exam.id == exam_id).values(created_at=at))
            await db.commit()
        for exam_id in ids[: args.due]:
            await sync_timers(app, exam_id)
        print(f"{await app.bus.timer_count()} pending; {args.due} due over {args.spread:.0f} s")
        # Steady state: the timers are in the engine already (the rebuild above). The
        # worker loops share this process, as they would not in production.
        await run_loops(settings, args.workers, start + args.spread + 5, rebuild=False)
        async with app.db() as db:
            bodies = (await db.execute(select(ExamEvent.at, ExamEvent.body))).all()
    lateness = [
        (at - datetime.fromisoformat(body["due_at"])).total_seconds() for at, body in bodies
    ]
    report(f"full ({args.workers} workers, {count} pending)", lateness, args.due)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["engine", "full"])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--exams", type=int, default=5_000)
    parser.add_argument("--due", type=int, default=500, help="full mode: how many fire")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds the due times span")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        upgrade(f"sqlite+aiosqlite:///{db}")
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{db}",
            redis_url=REDIS_URL,
            redis_prefix=f"bench:{uuid.uuid4().hex[:8]}:",
            argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1,
            log_level="WARNING",
        )  # fmt: skip
        job = bench_engine if args.mode == "engine" else bench_full
        try:
            asyncio.run(job(args, settings))
        finally:
            delete_redis_prefix(REDIS_URL, settings.redis_prefix)


if __name__ == "__main__":
    main()
