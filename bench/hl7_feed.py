"""HL7 v2 inbound benchmark: messages acknowledged per second by ``teleimagerie hl7``
over one MLLP connection and over ten, for the identity feed (ADT^A28) and for
orders (ORM^O01, each creating an exam), with the latency of each order's ACK.

    .venv/bin/python bench/hl7_feed.py [--identities 2000] [--orders 500] [--database-url URL]
        [--base DIR] [--rounds N] [--processes N] [--only identities|orders] [--cap N]

A fresh database (SQLite in a temp dir unless --database-url names an empty one)
with one establishment, a radiologist on duty and the sender DPI/CHU_A; the
listener runs as its own process, as the Procfile's ``hl7`` line starts it
(``python -m server.cli hl7``); the senders are python-hl7's asyncio MLLP client in
this process, each waiting for the ACK of a message before sending the next (as HL7
original mode asks).

``--base DIR`` compares with another version of the code (a source tree, for
instance ``git archive main | tar -x -C DIR``): its listener runs beside this
one's on the same database, and every run is made on both, alternated (A/B, then
B/A in the next round), so that both see the same load. Each line prints the load
average; a summary table (medians over the rounds) ends the output.
``--processes N`` runs this version's listener as ``teleimagerie hl7 --processes N``
(the CPU figure then sums its processes).

On PostgreSQL each timed run starts with an ``ANALYZE`` (:func:`analyse`), as
autovacuum keeps a production database's statistics.

``--cap N``: the radiologist's cap of exams in progress, the roster's default (5)
unless given. Nobody reads or signs during the run, so past the cap the orders are
requested unassigned and the coordinators alerted, as a hospital's burst would be.
``--cap 1000000`` is how this bench ran until 2026-12-07: every order assigned to one
radiologist whose exams in progress then number in the tens of thousands, and whose
load, counted at each group's routing, costs more as the run goes (docs/benchmarks.md
"Eighth pass").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from hl7.mllp import open_hl7_connection  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.common import cpu_seconds, percentile  # noqa: E402
from server.accounts.service import add_establishment, add_user  # noqa: E402
from server.composition import core_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.db import create_engine  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.interfaces.senders import add_sender  # noqa: E402
from server.roster.service import DEFAULT_MAX_IN_PROGRESS, Shift  # noqa: E402
from server.testing import free_port  # noqa: E402
from tests.interfaces import messages as m  # noqa: E402

PASSWORD = "bench password, loopback only"  # noqa: S105 - a throw-away database
ROOT = Path(__file__).resolve().parent.parent


async def seed(settings: Settings, cap: int) -> None:
    """HOPA, a radiologist on duty for the whole run with ``cap`` exams in progress at
    most (orders are routed as in production: to him while he is under it, to nobody
    with the coordinators alerted once he is at it), the sender DPI/CHU_A."""
    now = datetime.now(UTC)
    async with core_context(settings) as app, app.db() as db:
        await add_establishment(app, db, "HOPA", "Bench hospital")
        rad = await add_user(app, db, "rad", PASSWORD, "radiologist", None, "RAD")
        db.add(
            Shift(
                radiologist_id=rad.id, role="primary", kind="oncall",
                starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=1),
                establishment_ids=[], max_in_progress=cap, created_at=now,
            )
        )  # fmt: skip
        await add_sender(app, db, "DPI", "CHU_A", "HOPA")
        await db.commit()


async def analyse(url: str) -> None:
    """PostgreSQL: the tables' statistics brought up to date, as autovacuum keeps them
    in production (``ANALYZE`` once 10 % of a table has changed, PostgreSQL's default).
    This machine's PostgreSQL runs with autovacuum off, and the bench's tables grow
    from nothing to tens of thousands of rows in minutes: without statistics the
    planner takes an identity's or an order's lookup for a few rows and reads every
    row of the establishment instead (docs/benchmarks.md "Eighth pass")."""
    if not url.startswith("postgresql"):
        return
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


def start_listener(
    database_url: str, port: int, tree: Path, processes: int = 1
) -> subprocess.Popen[bytes]:
    """``teleimagerie hl7`` of the source tree ``tree``."""
    more = ["--processes", str(processes)] if processes > 1 else []
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(tree),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "hl7",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *more,
        ],
        env=env,
        cwd=tree,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the listener did not start")


async def sender(port: int, texts: list[str], latencies: list[float]) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    try:
        for text in texts:
            started = time.perf_counter()
            writer.writeblock(text.encode())
            await writer.drain()
            ack = await reader.readmessage()
            latencies.append(time.perf_counter() - started)
            code = str(ack.segment("MSA")(1))
            if code != "AA":
                raise RuntimeError(f"not accepted: {ack}")
    finally:
        writer.close()
        await writer.wait_closed()


def listener_cpu(pid: int) -> float:
    """CPU seconds of the listener and of its children (``--processes N``)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


async def run(
    pid: int, port: int, name: str, texts: list[str], connections: int, version: str = ""
) -> dict[str, float]:
    """Send ``texts`` over ``connections``; print the rate, the ACK latencies, and the
    listener's CPU time per message (what the rate would be with a core to itself:
    the figure that does not depend on what else the machine runs)."""
    latencies: list[float] = []
    shares = [texts[i::connections] for i in range(connections)]
    cpu = listener_cpu(pid)
    started = time.perf_counter()
    await asyncio.gather(*(sender(port, share, latencies) for share in shares))
    elapsed = time.perf_counter() - started
    per_msg = (listener_cpu(pid) - cpu) / len(texts)
    ms = [x * 1000 for x in latencies]
    load = os.getloadavg()[0]
    figures = {
        "rate": len(texts) / elapsed,
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "cpu": per_msg * 1000,
        "load": load,
    }
    print(
        f"{version:<5} {name:<22} {connections:>2} conn {len(texts):>5} msgs {elapsed:6.2f} s "
        f"{figures['rate']:6.1f} ack/s  p50 {figures['p50']:6.1f} ms  "
        f"p99 {figures['p99']:6.1f} ms  listener CPU {figures['cpu']:5.2f} ms/msg  "
        f"load {load:4.1f}",
        flush=True,
    )
    return figures


def identities(prefix: str, count: int) -> list[str]:
    return [
        m.adt("A28", f"{prefix}{i}", m.pid(f"{prefix}-{i}", status="PROV", ins=None))
        for i in range(count)
    ]


def orders(prefix: str, count: int) -> list[str]:
    return [
        m.order(
            f"{prefix}{i}", f"{prefix}-CMD-{i}", m.pid(f"{prefix}-P{i}", status="PROV", ins=None)
        )
        for i in range(count)
    ]


CASES = (
    ("identity feed ADT^A28", identities, 1),
    ("identity feed ADT^A28", identities, 10),
    ("orders ORM^O01", orders, 1),
    ("orders ORM^O01", orders, 10),
)


def summary(database: str, results: dict[tuple[str, str, int], list[dict[str, float]]]) -> None:
    """One markdown table: the median of each figure over the rounds."""
    print(f"\n{database}: medians over the rounds (load: 1-minute average during the runs)")
    print(
        "| version | run | conns | ack/s | ACK p50 ms | ACK p99 ms | listener CPU ms/msg | load |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (version, name, conns), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        loads = [r["load"] for r in runs]
        print(
            f"| {version} | {name} | {conns} | {med['rate']:.0f} | {med['p50']:.1f} | "
            f"{med['p99']:.1f} | {med['cpu']:.2f} | {min(loads):.1f}-{max(loads):.1f} |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--base", type=Path, default=None, help="another source tree to compare")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--processes", type=int, default=1, help="listener processes of this version"
    )
    parser.add_argument(
        "--only", choices=("identities", "orders"), default=None, help="one feed's runs alone"
    )
    parser.add_argument(
        "--cap",
        type=int,
        default=DEFAULT_MAX_IN_PROGRESS,
        help="the radiologist's exams in progress at most (1000000: every order his)",
    )
    args = parser.parse_args()
    trees = [("new", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(args.database_url or f"sqlite:///{tmp}/hl7.db")
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, log_level="WARNING")
        await seed(settings, args.cap)
        listeners = {}
        try:
            for version, tree in trees:
                port = free_port()
                processes = args.processes if version == "new" else 1
                listeners[version] = (start_listener(url, port, tree, processes), port)
            database = url.split("://")[0]
            names = ", ".join(f"{v}={t}" for v, t in trees)
            print(f"database: {database}; versions: {names}; new: {args.processes} process(es)")
            for version, (proc, port) in listeners.items():
                await run(
                    proc.pid, port, "warm-up ADT^A28", identities(f"W{version}", 100), 1, version
                )
            results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
            for r in range(args.rounds):
                for c, (name, make, conns) in enumerate(CASES):
                    if args.only and (make is identities) != (args.only == "identities"):
                        continue
                    order = list(listeners.items())
                    if (r + c) % 2:
                        order.reverse()
                    for version, (proc, port) in order:
                        count = args.identities if make is identities else args.orders
                        texts = make(f"{version[0].upper()}{r}x{c}x", count)
                        await analyse(url)
                        figures = await run(proc.pid, port, name, texts, conns, version)
                        results.setdefault((version, name, conns), []).append(figures)
            summary(
                database,
                dict(sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))),
            )
        finally:
            for proc, _port in listeners.values():
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
