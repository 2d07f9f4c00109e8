"""HL7 v2 inbound benchmark: messages acknowledged per second by ``teleimagerie hl7``
over one MLLP connection and over ten, for the identity feed (ADT^A28) and for
orders (ORM^O01, each creating an exam), with the latency of each order's ACK.

    .venv/bin/python bench/hl7_feed.py [--identities 2000] [--orders 500] [--database-url URL]

A fresh database (SQLite in a temp dir unless --database-url names an empty one)
with one establishment, a radiologist on duty and the sender DPI/CHU_A; the
listener runs as its own process, exactly as the Procfile's ``hl7`` line starts it;
the senders are python-hl7's asyncio MLLP client in this process, each waiting for
the ACK of a message before sending the next (as HL7 original mode asks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from hl7.mllp import open_hl7_connection  # noqa: E402

from bench.common import cpu_seconds, percentile  # noqa: E402
from server.accounts.service import add_establishment, add_user  # noqa: E402
from server.composition import core_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.interfaces.senders import add_sender  # noqa: E402
from server.roster.service import Shift  # noqa: E402
from server.testing import free_port  # noqa: E402
from tests.interfaces import messages as m  # noqa: E402

PASSWORD = "bench password, loopback only"  # noqa: S105 - a throw-away database
ROOT = Path(__file__).resolve().parent.parent


async def seed(settings: Settings) -> None:
    """HOPA, a radiologist on duty for the whole run (orders are routed to him, as in
    production), the sender DPI/CHU_A."""
    now = datetime.now(UTC)
    async with core_context(settings) as app, app.db() as db:
        await add_establishment(app, db, "HOPA", "Bench hospital")
        rad = await add_user(app, db, "rad", PASSWORD, "radiologist", None, "RAD")
        db.add(
            Shift(
                radiologist_id=rad.id, role="primary", kind="oncall",
                starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=1),
                establishment_ids=[], max_in_progress=1_000_000, created_at=now,
            )
        )  # fmt: skip
        await add_sender(app, db, "DPI", "CHU_A", "HOPA")
        await db.commit()


def start_listener(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/teleimagerie"), "hl7", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
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


async def run(pid: int, port: int, name: str, texts: list[str], connections: int) -> None:
    """Send ``texts`` over ``connections``; print the rate, the ACK latencies, and the
    listener's CPU time per message (what the rate would be with a core to itself:
    the figure that does not depend on what else the machine runs)."""
    latencies: list[float] = []
    shares = [texts[i::connections] for i in range(connections)]
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(sender(port, share, latencies) for share in shares))
    elapsed = time.perf_counter() - started
    per_msg = (cpu_seconds(pid) - cpu) / len(texts)
    ms = [x * 1000 for x in latencies]
    print(
        f"{name:<22} {connections:>2} conn {len(texts):>5} msgs {elapsed:6.2f} s "
        f"{len(texts) / elapsed:6.1f} ack/s  p50 {percentile(ms, 50):6.1f} ms  "
        f"p99 {percentile(ms, 99):6.1f} ms  listener CPU {per_msg * 1000:5.2f} ms/msg "
        f"({1 / per_msg if per_msg else float('inf'):6.1f} msg/CPU-s)"
    )


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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(args.database_url or f"sqlite:///{tmp}/hl7.db")
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, log_level="WARNING")
        await seed(settings)
        port = free_port()
        proc = start_listener(url, port)
        try:
            print(f"database: {url.split('://')[0]}")
            pid = proc.pid
            await run(pid, port, "warm-up ADT^A28", identities("W", 100), 1)
            await run(pid, port, "identity feed ADT^A28", identities("A", args.identities), 1)
            await run(pid, port, "identity feed ADT^A28", identities("B", args.identities), 10)
            await run(pid, port, "orders ORM^O01", orders("C", args.orders), 1)
            await run(pid, port, "orders ORM^O01", orders("D", args.orders), 10)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
