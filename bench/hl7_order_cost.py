"""What one HL7 order costs the listener, without its sockets: SQL statements and CPU
per ``ORM^O01`` (docs/benchmarks.md "HL7 inbound", "Orders: CPU per order").

    .venv/bin/python bench/hl7_order_cost.py [--orders 200] [--connections 1] [--database-url URL]
        [--redis-url URL]

The seed of bench/hl7_feed.py (an establishment, a radiologist on duty, the sender
DPI/CHU_A), then, in this process, 50 orders to warm up and ``--orders`` orders, each
through ``Inbound.handle`` (parse, apply, commit, ACK) and ``Inbound.publish`` (room
events, timers, notifications), one at a time as over one MLLP connection, or with
``--connections N`` from N senders at once, each waiting for its ACK before its next
order (the groups of server/interfaces/group.py form as over N connections). The rooms'
events and notifications go to the memory engine, or with ``--redis-url`` to a Redis
(under a prefix of its own), as in production. Prints the
statements per order (a ``before_cursor_execute`` listener; commits not counted) and
the CPU per order (``time.process_time``: every thread of the process, aiosqlite's
included). For a figure the machine's load does not move, count instructions: run it
under ``valgrind --tool=cachegrind --cache-sim=no`` with two ``--orders`` values; the
difference of the totals over the difference of the orders is the cost of one order.
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

from bench.hl7_feed import orders, seed  # noqa: E402
from server.composition import core_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.interfaces.inbound import Inbound, Peer  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--connections", type=int, default=1, help="senders at once")
    parser.add_argument("--database-url", default=None, help="an empty database")
    parser.add_argument("--redis-url", default=None, help="publish to this Redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(args.database_url or f"sqlite:///{tmp}/hl7.db")
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database_url=url,
            log_level="WARNING",
            redis_url=args.redis_url,
            redis_prefix=f"bench-order-cost-{os.getpid()}:",
        )
        await seed(settings)
        async with core_context(settings) as app:
            inbound = Inbound(app)
            statements = 0

            def count(*_args: Any) -> None:
                nonlocal statements
                statements += 1

            event.listen(app.sql.sync_engine, "before_cursor_execute", count)

            async def one(texts: list[str], peer: Peer) -> None:
                for text in texts:
                    ack, effects = await inbound.handle(text.encode(), peer)
                    if b"|AA|" not in ack:
                        raise RuntimeError(f"not accepted: {ack!r}")
                    await inbound.publish(effects)

            async def send(texts: list[str]) -> None:
                n = args.connections
                peers = [Peer(f"127.0.0.1:{i}", connection=i + 1) for i in range(n)]
                await asyncio.gather(*(one(texts[i::n], peers[i]) for i in range(n)))

            await send(orders("W", 50))
            statements = 0
            started = time.process_time()
            await send(orders("X", args.orders))
            cpu = time.process_time() - started
    print(
        f"{url.split('://')[0]}: {args.orders} orders over {args.connections} "
        f"connection(s), {statements / args.orders:.1f} "
        f"statements and {1000 * cpu / args.orders:.2f} ms CPU per order, "
        f"{'Redis' if args.redis_url else 'memory engine'}, "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
