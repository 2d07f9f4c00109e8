"""Exam-room benchmarks (docs/benchmarks.md "Exam rooms").

    python bench/room_load.py idle   [--connections 10000] [--processes 4 --source-ips 2]
                                     [--profile FILE]
    python bench/room_load.py fanout [--rooms 1000 --rate 1000 --seconds 20 --processes 2]
    python bench/room_load.py latency [--messages 200] [--redis]
    python bench/room_load.py storm  [--connections 2000 --writers 50 --rate 100]

`idle` holds N room connections open against one `teleimagerie serve` process and
reports the server's resident memory per connection. `fanout` puts 3 members in each of
R rooms, spread over P server processes sharing Redis, sends chat messages at a fixed
total rate (each one persisted in SQL, then fanned out through Redis), and reports the
send-to-receive latency seen by the other two members and the delivered rate.
`storm` holds N members (one session each) on a process P, has writers on a second
process Q post chat messages into some of the rooms throughout, kills P with SIGKILL,
starts it again on the same port, and reports the time until every member is joined
again and has received what it missed, then checks each member's events: every seq
of its exam from 2 to the last, once each, in order.
All default to SQLite; pass --database-url for PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.common import (  # noqa: E402
    ServerProcess,
    cpu_seconds,
    percentile,
    prepare_database,
    rss_kib,
    seed,
)
from server.core.config import Settings  # noqa: E402
from server.testing import delete_redis_prefix  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_env() -> dict[str, str]:
    """The shared Redis, under a prefix of this run's own (removed at the end)."""
    return {"REDIS_URL": REDIS_URL, "REDIS_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:"}


def forget(env: dict[str, str]) -> None:
    if "REDIS_PREFIX" in env:
        delete_redis_prefix(REDIS_URL, env["REDIS_PREFIX"])


async def open_room(
    ws_url: str, exam_id: str, token: str, source: str | None = None
) -> ClientConnection:
    """``source``: the local address to connect from (127.0.0.x: one address has
    only some 28,000-64,000 local ports, docs/deployment.md)."""
    return (await join_room(ws_url, exam_id, token, source))[0]


async def join_room(
    ws_url: str, exam_id: str, token: str, source: str | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    """A member's socket with ``since=1``, and its welcome."""
    ws = await connect(
        f"{ws_url}/ws/exams/{exam_id}?since=1",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=120,
        ping_interval=None,
        # No proxy lookup: it reads the environment on every connect (a tenth of
        # the generator's CPU per join).
        proxy=None,
        **({"local_addr": (source, 0)} if source else {}),
    )
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def open_many(targets: list[tuple[Any, ...]], parallel: int = 100) -> list[ClientConnection]:
    sem = asyncio.Semaphore(parallel)

    async def one(target: tuple[Any, ...]) -> ClientConnection:
        async with sem:
            return await open_room(*target)

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def idle(args: argparse.Namespace, workdir: Path) -> None:
    limit = raise_open_files(args.connections + 10_000)
    url = await asyncio.to_thread(prepare_database, args.database_url, workdir, args.fresh_database)
    n = args.connections
    settings = Settings(database_url=url)
    data = await seed(settings, exams=max(1, n // 3), sessions_per_role=1)
    # Several processes share presence and fan-out through Redis.
    redis = args.redis or args.processes > 1
    env = {"DATABASE_URL": url} | (redis_env() if redis else {})
    servers = [ServerProcess(env, profile=args.profile) for _ in range(args.processes)]
    for server in servers:
        await server.ready()
    try:
        roles = ("urgentist", "manipulator", "radiologist")
        warm = await open_many(
            [(s.ws_url, data.exam_ids[0], data.tokens["urgentist"][0]) for s in servers]
        )
        await asyncio.sleep(1)
        before = [rss_kib(s.proc.pid) for s in servers]
        cpu_before = sum(cpu_seconds(s.proc.pid) for s in servers)
        own_before = cpu_seconds(os.getpid())
        started = time.perf_counter()
        sources = [f"127.0.0.{1 + k}" for k in range(args.source_ips)]
        targets = [
            (
                servers[i % len(servers)].ws_url,
                data.exam_ids[i // 3 % len(data.exam_ids)],
                data.tokens[roles[i % 3]][0],
                sources[i % len(sources)] if args.source_ips > 1 else None,
            )
            for i in range(n)
        ]
        # In two halves: the second half's cost is what one more socket costs once
        # the fixed costs (pools, buffers, the collector's frozen generation) are paid.
        half = n // 2
        conns = await open_many(targets[:half], args.parallel)
        paused = time.perf_counter()
        await asyncio.sleep(3)
        middle = [rss_kib(s.proc.pid) for s in servers]
        resumed = time.perf_counter()
        conns += await open_many(targets[half:], args.parallel)
        opened = time.perf_counter() - started - (resumed - paused)
        cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu_before
        own_cpu = cpu_seconds(os.getpid()) - own_before
        await asyncio.sleep(3)
        after = [rss_kib(s.proc.pid) for s in servers]
        own_rss = rss_kib(os.getpid())
        load = os.getloadavg()
        print(
            f"idle connections held by {len(servers)} process(es): {len(conns)} "
            f"(open-files limit {limit}; load average {load[0]:.2f} {load[1]:.2f})"
        )
        print(
            f"opened in {opened:.1f} s ({len(conns) / opened:.0f} connections/s); "
            f"server CPU {cpu / len(conns) * 1000:.2f} ms per join "
            f"({cpu / opened * 100:.0f} % of a core); load generator CPU "
            f"{own_cpu / len(conns) * 1000:.2f} ms per join "
            f"({own_cpu / opened * 100:.0f} % of a core)"
        )
        print(
            f"server RSS before: {sum(before) / 1024:.1f} MiB, after: {sum(after) / 1024:.1f} MiB"
        )
        print(f"memory per idle connection: {(sum(after) - sum(before)) / len(conns):.1f} KiB")
        print(
            f"memory per idle connection beyond the first {half}: "
            f"{(sum(after) - sum(middle)) / max(1, n - half):.1f} KiB "
            f"(per process, RSS after: {', '.join(f'{a / 1024:.0f}' for a in after)} MiB); "
            f"the load generator's own RSS: {own_rss / 1024:.0f} MiB"
        )
        await check_presence_and_resume(targets, conns, len(data.exam_ids))
        for ws in conns + warm:
            await ws.close()
    finally:
        for server in servers:
            server.stop()
        forget(env)


async def check_presence_and_resume(
    targets: list[tuple[Any, ...]], conns: list[ClientConnection], rooms: int
) -> None:
    """With every socket still open: a member of the last room posts a message,
    another leaves and comes back through the next process with ``since=1``; its
    welcome must list the room's three members (spread over the processes) and
    the message must follow it."""
    members = [i for i in range(len(conns)) if i // 3 % rooms == rooms - 1][:3]
    if len(members) < 3:
        return
    sender, leaver = conns[members[0]], members[1]
    await sender.send(json.dumps({"type": "chat", "id": "probe", "text": "probe"}))
    while (frame := json.loads(await sender.recv()))["type"] != "ack":
        pass
    await conns[leaver].close()
    url, exam_id, token, source = targets[leaver]
    urls = sorted({t[0] for t in targets})
    url = urls[(urls.index(url) + 1) % len(urls)]  # back through another process
    ws, welcome = await join_room(url, exam_id, token, source)
    roles = sorted({entry["role"] for entry in welcome["presence"]})
    while (event := json.loads(await ws.recv()))["type"] != "event":
        pass
    resumed = event["event"]["id"] == "probe" and event["event"]["seq"] == frame["seq"]
    print(
        f"presence at the end: {roles} in the last room ({len(welcome['presence'])} entries); "
        f"resume with since=1 through another process: "
        f"{'the missed message, seq ' + str(frame['seq']) if resumed else 'FAILED: ' + str(event)}"
    )
    conns[leaver] = ws


async def fanout(args: argparse.Namespace, workdir: Path) -> None:
    url = await asyncio.to_thread(prepare_database, args.database_url, workdir, args.fresh_database)
    settings = Settings(database_url=url)
    data = await seed(settings, exams=args.rooms, sessions_per_role=1)
    env = {"DATABASE_URL": url} | redis_env()
    servers = [ServerProcess(env) for _ in range(args.processes)]
    for server in servers:
        await server.ready()
    try:
        roles = ("urgentist", "manipulator", "radiologist")
        targets = []
        for r, exam_id in enumerate(data.exam_ids):
            for m, role in enumerate(roles):
                server = servers[(r + m) % len(servers)]
                targets.append((server.ws_url, exam_id, data.tokens[role][0]))
        conns = await open_many(targets)
        print(f"{len(conns)} members in {args.rooms} rooms over {len(servers)} process(es)")
        # This process only generates load: its own collector pauses (hundreds of ms
        # with 3,000 sockets) would be counted as the server's latency.
        gc.collect()
        gc.disable()
        latencies: list[float] = []
        received = 0
        warm = int(args.rate * args.warmup)  # messages sent before the measurement
        # Where the time goes, per measured message: its client id -> the server's
        # stamp (the event's ``at``: the frame read and parsed), the sender's ack
        # (committed), and each delivery to another member.
        stamps: dict[str, Stamps] = {}

        async def reader(ws: ClientConnection, me: int) -> None:
            nonlocal received
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    if (stamp := stamps.get(frame["id"])) is not None:
                        stamp.acked = now
                    continue
                if kind != "event":
                    continue
                event = frame["event"]
                sender = event["body"].get("text", "").split("|")
                if len(sender) == 3 and int(sender[0]) != me:
                    received += 1
                    if int(sender[2]) >= warm:
                        latencies.append(now - float(sender[1]))
                        if (stamp := stamps.get(event["id"])) is not None:
                            stamp.stored = server_time(event["at"])
                            stamp.delivered.append(now)

        readers = [asyncio.create_task(reader(ws, i)) for i, ws in enumerate(conns)]
        interval = 1.0 / args.rate
        total = warm + int(args.rate * args.seconds)
        started = time.perf_counter()
        for i in range(total):
            if i == warm:  # the measured part starts
                cpu_before = [cpu_seconds(s.proc.pid) for s in servers]
                own_before = time.process_time()
                measured_from = time.perf_counter()
            member = (i * 3 + (i // args.rooms) % 3) % len(conns)
            sent = time.time()
            text = f"{member}|{sent!r}|{i}"
            chat_id = str(uuid.uuid4())
            if i >= warm:
                stamps[chat_id] = Stamps(sent)
            await conns[member].send(json.dumps({"type": "chat", "id": chat_id, "text": text}))
            lag = started + (i + 1) * interval - time.perf_counter()
            if lag > 0:
                await asyncio.sleep(lag)
        sent_in = time.perf_counter() - measured_from
        cpu = [cpu_seconds(s.proc.pid) - b for s, b in zip(servers, cpu_before, strict=True)]
        own = time.process_time() - own_before
        await asyncio.sleep(3)
        lat_ms = [x * 1000 for x in latencies]
        measured = total - warm
        print(
            f"sent {total} messages: {warm} to warm up, then {measured} in {sent_in:.1f} s "
            f"({measured / sent_in:.0f}/s offered)"
        )
        print(f"delivered {received} of {2 * total} expected (each message to 2 other members)")
        print(
            f"fan-out latency send->receive after warm-up: p50 {percentile(lat_ms, 50):.1f} ms, "
            f"p99 {percentile(lat_ms, 99):.1f} ms, max {max(lat_ms or [0]):.1f} ms"
        )
        print_stages(list(stamps.values()))
        print(
            "CPU while sending: servers "
            + ", ".join(f"{c / sent_in * 100:.0f} %" for c in cpu)
            + f" of a core; this client {own / sent_in * 100:.0f} %"
        )
        for task in readers:
            task.cancel()
        for ws in conns:
            await ws.close()
    finally:
        for server in servers:
            server.stop()
        forget(env)


class Stamps:
    """One measured chat message's way through the rooms, on this machine's clock."""

    __slots__ = ("sent", "stored", "acked", "delivered")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.stored: float | None = None  # the server read it (the event's ``at``)
        self.acked: float | None = None  # the sender got its ack: committed
        self.delivered: list[float] = []  # the other members got the event


def server_time(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def print_stages(stamps: list[Stamps]) -> None:
    """The fan-out latency cut into its stages: client -> server read; read ->
    ack at the sender (the group commit's wait and its transaction); ack ->
    delivered to the other members (publish, Redis, the other processes' decode
    and send). p50 / p99 / max of each, over the messages with every stamp."""
    whole = [s for s in stamps if s.stored is not None and s.acked is not None and s.delivered]
    if not whole:
        return
    stages = {
        "in (send -> server read)": [(s.stored or 0) - s.sent for s in whole],
        "store (read -> ack at the sender)": [(s.acked or 0) - (s.stored or 0) for s in whole],
        "out (ack -> last member)": [max(s.delivered) - (s.acked or 0) for s in whole],
    }
    print(f"stages over {len(whole)} messages (p50 / p99 / max, ms):")
    for name, values in stages.items():
        ms = [v * 1000 for v in values]
        print(f"  {name}: {percentile(ms, 50):.1f} / {percentile(ms, 99):.1f} / {max(ms):.1f}")


async def latency(args: argparse.Namespace, workdir: Path) -> None:
    """One room, two members, messages one at a time (under the per-connection rate
    limit): the time to the sender's ack and to the other member's event."""
    url = await asyncio.to_thread(prepare_database, args.database_url, workdir, args.fresh_database)
    data = await seed(Settings(database_url=url), exams=1, sessions_per_role=1)
    env = {"DATABASE_URL": url} | (redis_env() if args.redis else {})
    server = ServerProcess(env)
    await server.ready()
    try:
        exam = data.exam_ids[0]
        sender = await open_room(server.ws_url, exam, data.tokens["urgentist"][0])
        other = await open_room(server.ws_url, exam, data.tokens["radiologist"][0])
        acks, seen = [], []
        for i in range(args.messages):
            started = time.perf_counter()
            await sender.send(json.dumps({"type": "chat", "id": f"m{i}", "text": "x"}))
            while json.loads(await sender.recv()).get("type") != "ack":
                pass
            acks.append((time.perf_counter() - started) * 1000)
            while json.loads(await other.recv()).get("type") != "event":
                pass
            seen.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(max(0.0, 0.125 - (time.perf_counter() - started)))
        engine = "Redis" if args.redis else "memory"
        print(f"{args.messages} messages, one at a time ({engine} engine)")
        print(
            f"stored and acknowledged: p50 {percentile(acks, 50):.1f} ms, "
            f"p99 {percentile(acks, 99):.1f} ms"
        )
        print(
            f"received by the other member: p50 {percentile(seen, 50):.1f} ms, "
            f"p99 {percentile(seen, 99):.1f} ms"
        )
        await sender.close()
        await other.close()
    finally:
        server.stop()
        forget(env)


def raise_open_files(wanted: int = 0) -> int:
    """The open-files limit raised to its hard limit (each socket is a file), and
    the hard limit itself to ``wanted`` where this user may (root, up to
    ``fs.nr_open``): this process holds every client socket, and the servers it
    starts inherit the limit (docs/deployment.md "Many sockets on one machine")."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            soft, hard = wanted, wanted
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Member:
    """One storm client: its room, its session, and every event seq it was sent."""

    def __init__(self, ws_url: str, exam_id: str, token: str) -> None:
        self.ws_url = ws_url
        self.exam_id = exam_id
        self.token = token
        self.seqs: list[int] = []
        self.joins = 0
        self.caught_up_at: float | None = None  # after the latest welcome
        self.target = 0  # the welcome's last_seq

    @property
    def since(self) -> int:
        return self.seqs[-1] if self.seqs else 1

    async def run(self, joined: asyncio.Event | None) -> None:
        """Stay in the room: join, read, and join again (with since) when dropped."""
        while True:
            try:
                async with connect(
                    f"{self.ws_url}/ws/exams/{self.exam_id}?since={self.since}",
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=120,
                    ping_interval=None,
                ) as ws:
                    welcome = json.loads(await ws.recv())
                    assert welcome["type"] == "welcome", welcome
                    self.joins += 1
                    self.target = welcome["last_seq"]
                    self.caught_up_at = time.perf_counter() if self.since >= self.target else None
                    if joined is not None:
                        joined.set()
                        joined = None
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "event":
                            self.seqs.append(frame["event"]["seq"])
                            if self.caught_up_at is None and self.since >= self.target:
                                self.caught_up_at = time.perf_counter()
            except (TimeoutError, OSError, ConnectionClosed, InvalidStatus):
                pass
            # Dropped (the process died): back after a short random pause, as the
            # browser client does, so that the joins of a storm are spread a little.
            await asyncio.sleep(random.uniform(0.05, 0.5))


async def storm(args: argparse.Namespace, workdir: Path) -> None:
    limit = raise_open_files()
    url = await asyncio.to_thread(prepare_database, args.database_url, workdir, args.fresh_database)
    n = args.connections
    per_role = -(-n // 3)
    data = await seed(Settings(database_url=url), exams=max(1, n // 3), sessions_per_role=per_role)
    env = {"DATABASE_URL": url} | redis_env()
    target = ServerProcess(env)
    writers_at = ServerProcess(env)
    await target.ready()
    await writers_at.ready()
    roles = ("urgentist", "manipulator", "radiologist")
    members = [
        Member(
            target.ws_url,
            data.exam_ids[i // 3 % len(data.exam_ids)],
            data.tokens[roles[i % 3]][i // 3],
        )
        for i in range(n)
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        sem = asyncio.Semaphore(100)

        async def start(member: Member) -> None:
            async with sem:
                joined = asyncio.Event()
                tasks.append(asyncio.create_task(member.run(joined)))
                await joined.wait()

        began = time.perf_counter()
        await asyncio.gather(*(start(m) for m in members))
        print(
            f"{n} members (one session each) joined process P in "
            f"{time.perf_counter() - began:.1f} s; open-files limit {limit}"
        )
        hot = data.exam_ids[: args.writers]
        acked: dict[str, int] = {}
        stop = asyncio.Event()

        async def writer(exam_id: str, k: int) -> None:
            ws = await open_room(writers_at.ws_url, exam_id, data.tokens["urgentist"][k])
            interval = len(hot) / args.rate
            i = 0
            try:
                while not stop.is_set():
                    await ws.send(json.dumps({"type": "chat", "id": f"w{i}", "text": "storm"}))
                    i += 1
                    await asyncio.sleep(interval)
            finally:
                await ws.close()

        async def acks(exam_id: str) -> None:
            ws = await open_room(writers_at.ws_url, exam_id, data.tokens["radiologist"][0])
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "event":
                    acked[exam_id] = max(acked.get(exam_id, 1), frame["event"]["seq"])

        watchers = [asyncio.create_task(acks(e)) for e in hot]
        writing = [asyncio.create_task(writer(e, k)) for k, e in enumerate(hot)]
        await asyncio.sleep(args.before)
        target.proc.send_signal(signal.SIGKILL)
        target.proc.wait()
        killed = time.perf_counter()
        target = ServerProcess(env, port=target.port)
        await target.ready()
        restarted = time.perf_counter()
        rejoined_at = resumed_at = None
        while rejoined_at is None or resumed_at is None:
            now = time.perf_counter()
            if rejoined_at is None and all(m.joins >= 2 for m in members):
                rejoined_at = now
            if all(m.joins >= 2 and m.caught_up_at is not None for m in members):
                resumed_at = now
            if now - killed > args.timeout:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*writing, return_exceptions=True)
        await asyncio.sleep(2)  # the last messages reach everyone
        for task in watchers:
            task.cancel()
        load = os.getloadavg()
        print(
            f"P killed (SIGKILL) and started again: ready {restarted - killed:.1f} s after the kill"
        )
        if rejoined_at is None or resumed_at is None:
            missing = sum(1 for m in members if m.joins < 2 or m.caught_up_at is None)
            print(f"NOT all back within {args.timeout:.0f} s: {missing} members missing")
        else:
            print(
                f"all rejoined in {rejoined_at - killed:.1f} s after the kill "
                f"({n / (rejoined_at - restarted):.0f} joins/s once P was ready); "
                f"all rejoined and resumed in {resumed_at - killed:.1f} s"
            )
        bad = 0
        events = 0
        for m in members:
            expected = list(range(2, acked.get(m.exam_id, 1) + 1))
            events += len(m.seqs)
            if m.seqs != expected:
                bad += 1
        print(
            f"per member check: {n - bad} of {n} received every event of their exam once, "
            f"in order ({events} events in all, {sum(acked.values()) - len(acked)} written "
            f"into {len(hot)} rooms); load average {load[0]:.2f} {load[1]:.2f}"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        target.stop()
        writers_at.stop()
        forget(env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    p_idle = sub.add_parser("idle")
    p_idle.add_argument("--connections", type=int, default=10_000)
    p_idle.add_argument("--redis", action="store_true", help="use the Redis engine")
    p_idle.add_argument("--processes", type=int, default=1, help="server processes (Redis)")
    p_idle.add_argument(
        "--source-ips", type=int, default=1, help="connect from 127.0.0.1 .. 127.0.0.N"
    )
    p_idle.add_argument(
        "--parallel",
        type=int,
        default=100,
        help="handshakes in flight at once (in a reconnect storm, every client at once)",
    )
    p_idle.add_argument(
        "--profile", type=Path, default=None, help="run the server under cProfile, stats here"
    )
    p_fan = sub.add_parser("fanout")
    p_fan.add_argument("--rooms", type=int, default=1000)
    p_fan.add_argument("--rate", type=float, default=1000)
    p_fan.add_argument("--seconds", type=float, default=20)
    p_fan.add_argument("--processes", type=int, default=1)
    p_fan.add_argument(
        "--warmup", type=float, default=2, help="seconds sent at the rate but not measured"
    )
    p_lat = sub.add_parser("latency")
    p_lat.add_argument("--messages", type=int, default=200)
    p_lat.add_argument("--redis", action="store_true", help="use the Redis engine")
    p_storm = sub.add_parser("storm")
    p_storm.add_argument("--connections", type=int, default=2000)
    p_storm.add_argument("--writers", type=int, default=50, help="rooms written into")
    p_storm.add_argument("--rate", type=float, default=100, help="chat messages a second in all")
    p_storm.add_argument("--before", type=float, default=3, help="seconds before the kill")
    p_storm.add_argument("--timeout", type=float, default=300)
    for p in (p_idle, p_fan, p_lat, p_storm):
        p.add_argument("--database-url", default=None)
        p.add_argument(
            "--fresh-database",
            action="store_true",
            help="drop and create the PostgreSQL database of --database-url first",
        )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modes = {"idle": idle, "fanout": fanout, "latency": latency, "storm": storm}
        # uvloop, as the server runs: the load generator shares the two cores with it.
        uvloop.run(modes[args.mode](args, Path(tmp)))


if __name__ == "__main__":
    main()
