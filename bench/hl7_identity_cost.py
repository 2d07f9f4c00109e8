"""What one identity message costs the listener, without its sockets: SQL statements
and CPU per ``ADT^A28`` alone in its transaction, and in groups of ten
(docs/benchmarks.md "HL7 inbound", "Identity feed: a message alone").

    .venv/bin/python bench/hl7_identity_cost.py [--identities 500] [--database-url URL]

The seed of bench/hl7_feed.py, then, in this process, through ``Inbound.handle``
(parse, apply, commit, ACK) and ``Inbound.publish``: ``--identities`` messages one at
a time (as over one MLLP connection), then as many sent by ten tasks at once (as over
ten connections, the listener grouping them). Prints the statements per message (a
``before_cursor_execute`` listener: what the driver is given, commits not counted),
the database round trips counted by the driver where it can tell (PostgreSQL), and
the CPU per message (``time.process_time``: every thread of the process, aiosqlite's
included). For a figure the machine's load does not move, run it under ``valgrind
--tool=cachegrind --cache-sim=no`` with two ``--identities`` values: the difference
of the totals over the difference of the counts is the cost of one message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from sqlalchemy import event  # noqa: E402

from bench.hl7_feed import identities, seed  # noqa: E402
from server.composition import core_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.interfaces.inbound import Inbound, Peer  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="an empty database")
    parser.add_argument("--only", choices=("alone", "ten"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(args.database_url or f"sqlite:///{tmp}/hl7.db")
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, log_level="WARNING")
        await seed(settings)
        async with core_context(settings) as app:
            inbound = Inbound(app)
            counts = {"statements": 0, "commits": 0}

            def statement(*_args: Any) -> None:
                counts["statements"] += 1

            def commit(*_args: Any) -> None:
                counts["commits"] += 1

            event.listen(app.sql.sync_engine, "before_cursor_execute", statement)
            event.listen(app.sql.sync_engine, "commit", commit)

            async def send(texts: list[str], connection: int) -> None:
                peer = Peer("127.0.0.1", connection=connection)
                for text in texts:
                    ack, effects = await inbound.handle(text.encode(), peer)
                    if b"|AA|" not in ack:
                        raise RuntimeError(f"not accepted: {ack!r}")
                    await inbound.publish(effects)

            async def measure(name: str, texts: list[str], connections: int) -> None:
                counts.update(statements=0, commits=0)
                started = time.process_time()
                await asyncio.gather(
                    *(send(texts[i::connections], i + 1) for i in range(connections))
                )
                cpu = time.process_time() - started
                n = len(texts)
                print(
                    f"{url.split('://')[0]:<10} {name:<6} {n} ADT^A28: "
                    f"{counts['statements'] / n:.2f} statements, "
                    f"{counts['commits'] / n:.2f} commits, "
                    f"{1000 * cpu / n:.3f} ms CPU per message, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )

            await send(identities("W", 50), 1)
            if args.only in (None, "alone"):
                await measure("alone", identities("A", args.identities), 1)
            if args.only in (None, "ten"):
                await measure("ten", identities("T", args.identities), 10)


if __name__ == "__main__":
    asyncio.run(main())
