"""Calls at scale: server CPU per call, concurrent calls, and who adds the delay.

    .venv/bin/python bench/calls.py                      # 2-party audio, 1..30 calls
    .venv/bin/python bench/calls.py --parties 3 --video  # 3-party, one VP8 video each
    [--steps 1,8,16,30] [--runs 3] [--workers 4] [--window 5] [--nice 10]
    [--media forward|transcode] [--encode pre|live] [--keep-going]

The server runs as its own process (this file with ``--serve``: ``teleimagerie
serve`` plus the timing hooks below; SQLite, the Redis engine unless ``--redis ''``,
ICE on 127.0.0.1, the uvloop event loop uvicorn picks). The aiortc clients run in
``--workers`` other processes, on uvloop too, at a lower priority (``--nice``) so that
the server gets the CPU first when the machine is short: the generator's own lateness then shows in
the client figures, not in the server's. For each step N, N calls (each in its own
exam, every member sending a noisy 440 Hz tone and, with ``--video``, a 160x120 VP8
video) are set up; during a measurement window the server's CPU time is read with
psutil and the clients record when each relayed frame arrives (encoded: they count
frames without decoding them). A stream is late when it delivered under 90 % of
its frame rate (50/s audio, 30/s video) or had a p99 gap over 100 ms.

What the clients send (``--encode``):

- ``pre`` (the default): every client plays loops encoded once when it is built,
  with aiortc's own Opus and VP8 encoders and settings (server.calls.media_loop: 4 s
  of its own noisy tone, so no two clients share a payload; 3 s of 160x120 video, a
  keyframe then delta frames, restarted at the keyframe on a PLI); the senders only
  packetise. The server receives the same RTP as from live encoders, and the
  generator no longer spends most of the machine encoding. The figures in
  docs/benchmarks.md from 2026-12-06 evening on are of this mode.
- ``live``: every client encodes its tone and its video in real time (aiortc's
  encoder threads), as the earlier figures of docs/benchmarks.md were measured.

"generator CPU %" is the CPU time of the client processes (every thread) during
the window, in % of one core: what the load costs to produce.

Delay, measured twice for every Opus packet (forwarding keeps its payload bytes):

- server-added: in the server process, from the datagram's arrival at its ICE
  socket (aioice ``data_received``) to the moment the other member's sender takes
  the frame (packing, SRTP and ``sendto`` follow without a yield): SRTP, the
  receiver, the tap, and every wait on the server's event loop;
- end to end: in the client process (both members of a call live in one worker),
  from the sender's RTCRtpSender producing the packet to the other member's
  RTCRtpReceiver getting it; the difference is loopback UDP and the generator's own
  event loops.

With ``--video``, halfway through the window every member sends one PLI for each
video it receives; the figure is how many of them reached the source's sender
(through the server's ``forward_keyframe_requests``). ``BENCH_PROFILE=/tmp/srv.prof``
runs the server under cProfile, timed in CPU time (``python -m pstats``);
``BENCH_CLIENT_PROFILE=/tmp/dir`` does the same for each client process. The summary
at the end gives the median of the runs for each step, beside the targets of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import psutil
import uvloop
from aiortc import RTCRtpReceiver, RTCRtpSender

ROOT = Path(__file__).resolve().parent.parent
# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(ROOT)

from server.calls.client import CallClient  # noqa: E402
from server.calls.manager import restrict_host_addresses  # noqa: E402
from server.testing import free_port  # noqa: E402
from tests.helpers import PASSWORD, exam_payload, login  # noqa: E402

RATES = {"audio": 50.0, "video": 30.0}  # frames a second a stream should deliver
TARGET_AUDIO_CALLS, TARGET_VIDEO_CALLS = 30, 8
TARGET_CPU_PER_CALL, TARGET_P99_MS = 3.0, 20.0
USERS = (("urg", "urgentist"), ("man", "manipulator"), ("urg2", "urgentist"))


class PacketClock:
    """Client side: when each Opus payload left a sender and reached a receiver."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}  # payload -> its send
        self.delays: list[tuple[float, float]] = []  # (arrival, arrival - send)
        self.keyframe_requests: list[float] = []  # when a PLI/FIR reached one of our senders
        clock = self
        next_frame = RTCRtpSender._next_encoded_frame
        handle = RTCRtpReceiver._handle_rtp_packet
        send_keyframe = RTCRtpSender._send_keyframe

        async def timed_frame(sender: RTCRtpSender, codec: Any) -> Any:
            frame = await next_frame(sender, codec)
            if frame is not None and sender.kind == "audio":
                now = time.monotonic()
                for payload in frame.payloads:
                    clock.sent[bytes(payload)] = now
            return frame

        async def timed_packet(receiver: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
            sent = clock.sent.get(packet.payload)  # a payload reaches every other member
            if sent is not None:
                now = time.monotonic()
                clock.delays.append((now, now - sent))
                if len(clock.sent) > 20000:
                    clock.sent = {p: t for p, t in clock.sent.items() if t > now - 2}
            await handle(receiver, packet, arrival_time_ms)

        def counted_keyframe(sender: RTCRtpSender) -> None:
            clock.keyframe_requests.append(time.monotonic())
            send_keyframe(sender)

        RTCRtpSender._next_encoded_frame = timed_frame  # type: ignore[method-assign]
        RTCRtpReceiver._handle_rtp_packet = timed_packet  # type: ignore[method-assign]
        RTCRtpSender._send_keyframe = counted_keyframe  # type: ignore[method-assign]


class ServerClock:
    """Server side: from an Opus packet's arrival at the ICE socket to the moment the
    other member's sender takes it. ``SIGUSR1`` writes what was measured since the
    last one to ``path`` as JSON ``[[wall time, delay s], ...]``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.arrived: dict[bytes, float] = {}  # payload -> arrival (wall clock)
        self.delays: list[tuple[float, float]] = []
        clock = self
        data_received = aioice.ice.Connection.data_received
        recvfrom = aioice.ice.Connection.recvfrom
        handle = RTCRtpReceiver._handle_rtp_packet
        next_frame = RTCRtpSender._next_encoded_frame

        def stamped(conn: Any, data: bytes, component: int) -> None:
            conn.__dict__.setdefault("bench_arrivals", deque()).append(time.time())
            data_received(conn, data, component)

        async def stamped_recvfrom(conn: Any) -> tuple[bytes, int]:
            result = await recvfrom(conn)  # one queue item per data_received
            arrivals = conn.__dict__.get("bench_arrivals")
            conn.bench_last = arrivals.popleft() if arrivals else None
            return result

        async def timed_packet(receiver: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
            arrived = getattr(receiver.transport.transport._connection, "bench_last", None)
            if arrived is not None:
                clock.arrived[packet.payload] = arrived
            await handle(receiver, packet, arrival_time_ms)

        async def timed_frame(sender: RTCRtpSender, codec: Any) -> Any:
            frame = await next_frame(sender, codec)
            if frame is not None and sender.kind == "audio":
                now = time.time()
                for payload in frame.payloads:
                    arrived = clock.arrived.get(payload)
                    if arrived is not None:
                        clock.delays.append((now, now - arrived))
                if len(clock.arrived) > 20000:  # a payload goes to every other member
                    clock.arrived = {p: t for p, t in clock.arrived.items() if t > now - 2}
            return frame

        aioice.ice.Connection.data_received = stamped  # type: ignore[method-assign]
        aioice.ice.Connection.recvfrom = stamped_recvfrom  # type: ignore[method-assign]
        RTCRtpReceiver._handle_rtp_packet = timed_packet  # type: ignore[method-assign]
        RTCRtpSender._next_encoded_frame = timed_frame  # type: ignore[method-assign]
        signal.signal(signal.SIGUSR1, self._dump)

    def _dump(self, _signum: int, _frame: Any) -> None:
        delays, self.delays = self.delays, []
        tmp = self.path + ".tmp"
        Path(tmp).write_text(json.dumps(delays))
        os.replace(tmp, self.path)


def serve(port: int, timing: str) -> None:
    """The server process: ``teleimagerie serve`` with the ServerClock hooks."""
    import cProfile

    from server.core.config import Settings
    from server.web.serve import serve as run

    ServerClock(timing)
    profile = os.environ.get("BENCH_PROFILE")
    # CPU time, not wall time: on a loaded machine the wall clock also counts the
    # moments the process waited for a core.
    profiler = cProfile.Profile(time.process_time) if profile else None
    if profiler is not None:
        profiler.enable()
    try:
        run(Settings.from_env(), "127.0.0.1", port)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)


def prepare(env: dict[str, str]) -> None:
    """Migrate and add one establishment with the members of the calls."""
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "teleimagerie", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [bin_ / "teleimagerie", "establishment", "add", "BENCH", "Bench"],
        env=env,
        check=True,
        capture_output=True,
    )
    for user, role in USERS:
        subprocess.run(
            [
                bin_ / "teleimagerie",
                "user",
                "add",
                user,
                "--role",
                role,
                "--establishment",
                "BENCH",
            ],
            env=env,
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )


def stream_figures(times: list[float], kind: str, t0: float, t1: float) -> dict[str, Any]:
    inside = [t for t in times if t0 <= t <= t1]
    window = t1 - t0
    gaps = sorted(y - x for x, y in zip(inside, inside[1:], strict=False)) or [window]
    return {
        "kind": kind,
        "rate": len(inside) / (RATES[kind] * window),
        "p99_gap_ms": 1000 * gaps[int(0.99 * (len(gaps) - 1))],
    }


async def run_calls(
    base: str,
    exams: list[str],
    tokens: list[str],
    sync: Any,
    window: float,
    video: bool,
    encoded: bool,
) -> dict[str, Any]:
    """Client worker: join every exam's call with every member, measure, hang up."""
    ready, start = sync
    clock = PacketClock()
    restrict_host_addresses(("127.0.0.1",))
    ws = base.replace("http://", "ws://")
    calls: list[list[CallClient]] = []
    for exam in exams:
        members = [
            await CallClient(ws, exam, token, video=video, decode=False, encoded=encoded).connect()
            for token in tokens
        ]
        for member in members:
            await member.join()
        calls.append(members)
    expected = len(tokens) - 1
    for members in calls:  # media flows from everyone to everyone before the window
        for member in members:
            await member.wait_for(
                lambda c: (
                    sum(1 for n in c.received.values() if n >= 25) >= expected * (2 if video else 1)
                ),
                60,
            )
    ready.put(len(calls))
    while start.value == 0.0:  # noqa: ASYNC110 - a value shared across processes
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, start.value - time.time()))
    t0, cpu0 = time.monotonic(), time.process_time()
    plis = 0
    if video:
        await asyncio.sleep(window / 2)
        for members in calls:
            for member in members:
                assert member.pc is not None
                for t in member.pc.getTransceivers():
                    if t.kind == "video" and t.direction == "recvonly":
                        for source in t.receiver.getSynchronizationSources():
                            await t.receiver._send_rtcp_pli(source.source)
                            plis += 1
        await asyncio.sleep(window / 2)
    else:
        await asyncio.sleep(window)
    t1, cpu1 = time.monotonic(), time.process_time()
    await asyncio.sleep(0.3)  # let the last PLIs arrive
    streams = []
    for members in calls:
        for client in members:
            for (_, kind), times in client.arrivals.items():
                streams.append(stream_figures(times, kind, t0, t1))
            missing = expected * (2 if video else 1) - len(client.arrivals)
            streams += [{"kind": "audio", "rate": 0.0, "p99_gap_ms": 1000 * window}] * missing
    result = {
        "streams": streams,
        "delays_ms": [1000 * d for t, d in clock.delays if t0 <= t <= t1],
        "plis_sent": plis,
        "cpu": 100 * (cpu1 - cpu0) / (t1 - t0),
        "keyframe_requests": sum(1 for t in clock.keyframe_requests if t0 <= t <= t1 + 0.3),
    }
    for members in calls:
        for member in members:
            await member.hangup()
            await member.close()
    return result


def worker(args: tuple[Any, ...]) -> dict[str, Any]:
    nice = args[-1]
    os.nice(nice)  # the server first: the generator's lateness stays the generator's
    profile = os.environ.get("BENCH_CLIENT_PROFILE")  # a directory: one file per worker
    if not profile:
        return uvloop.run(run_calls(*args[:-1]))
    import cProfile

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        return uvloop.run(run_calls(*args[:-1]))
    finally:
        profiler.disable()
        profiler.dump_stats(Path(profile) / f"client-{os.getpid()}.prof")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    return values[int(p * (len(values) - 1))] if values else float("nan")


def server_delays(server: subprocess.Popen[bytes], path: Path, t0: float, t1: float) -> list[float]:
    """What the server's ServerClock measured between t0 and t1 (wall clock), in ms."""
    path.unlink(missing_ok=True)
    server.send_signal(signal.SIGUSR1)
    for _ in range(100):
        if path.exists():
            break
        time.sleep(0.05)
    else:
        return []
    return sorted(1000 * d for t, d in json.loads(path.read_text()) if t0 <= t <= t1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=None, help="calls per step (default 1,8,16,30 / 1,4,8)")
    parser.add_argument("--parties", type=int, default=2, choices=(2, 3))
    parser.add_argument("--video", action="store_true", help="one VP8 video per member too")
    parser.add_argument("--runs", type=int, default=1, help="repeat the steps; summary: median")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--nice", type=int, default=10, help="the client processes' niceness")
    parser.add_argument(
        "--keep-going", action="store_true", help="run every step, even after a late one"
    )
    parser.add_argument("--media", choices=("forward", "transcode"), default="forward")
    parser.add_argument(
        "--encode",
        choices=("pre", "live"),
        default="pre",
        help="clients send loops encoded once (pre) or encode in real time (live)",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="the server's Redis, as in production ('' : the memory engine, which also runs"
        " the worker's loops in the server process)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--timing", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.timing)
        return 0
    default_steps = "1,4,8" if args.video else "1,8,16,30"
    steps = [int(s) for s in (args.steps or default_steps).split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="ti-bench-calls-"))
    timing = tmp / "server-delays.json"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "DICOM_STORAGE": str(tmp / "dicom"),
        "CALL_HOST_ADDRESSES": "127.0.0.1",
        "CALL_MAX_PARTICIPANTS": str(args.parties),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
        "CALL_MEDIA": args.media,
        "REDIS_URL": args.redis,
        "REDIS_PREFIX": f"bench-calls-{os.getpid()}:",
    }
    prepare(env)
    command = [sys.executable, __file__, "--serve", str(port), "--timing", str(timing)]
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    kind = f"{args.parties}-party {'audio+video' if args.video else 'audio'}"
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in steps}
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/api/protocols", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)

        async def setup() -> tuple[list[str], list[str]]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                tokens = [await login(http, user) for user, _ in USERS[: args.parties]]
                http.headers["Authorization"] = f"Bearer {tokens[0]}"
                exams = []
                for _ in range(sum(steps) * args.runs):
                    resp = await http.post("/api/exams", json=exam_payload())
                    exams.append(resp.json()["id"])
            return tokens, exams

        tokens, exams = asyncio.run(setup())
        proc = psutil.Process(server.pid)
        engine = "redis" if args.redis else "memory"
        print(
            f"{kind} calls, media: {args.media}, engine: {engine}, clients: {args.encode}-encoded;"
            f" load average before: {load()}"
        )
        print(
            f"{'run':>3} {'calls':>5} {'server CPU %':>12} {'% per call':>10} {'min rate':>8}"
            f" {'max p99 gap ms':>14} {'server p50/p99 ms':>17} {'end-to-end p50/p99':>18}"
            f" {'PLI':>7} {'gen CPU %':>9} {'load 1 min':>10}"
        )
        before = proc.cpu_times()
        time.sleep(args.window)
        after = proc.cpu_times()
        idle = 100 * (after.user + after.system - before.user - before.system) / args.window
        print(f"{'':>3} {0:>5} {idle:>12.1f}   (server idle, no call)")
        ctx = multiprocessing.get_context("spawn")
        manager = ctx.Manager()
        used = 0
        for run in range(1, args.runs + 1):
            for n in steps:
                ready, start = manager.Queue(), manager.Value("d", 0.0)
                mine, used = exams[used : used + n], used + n
                shares = [mine[i :: args.workers] for i in range(args.workers)]
                jobs = [
                    (
                        base,
                        share,
                        tokens,
                        (ready, start),
                        args.window,
                        args.video,
                        args.encode == "pre",
                        args.nice,
                    )
                    for share in shares
                    if share
                ]
                with ctx.Pool(len(jobs)) as pool:
                    pending = pool.map_async(worker, jobs)
                    wait_ready(ready, pending, len(jobs))
                    start.value = start_at = time.time() + 0.5
                    time.sleep(max(0.0, start_at - time.time()))
                    before = proc.cpu_times()
                    time.sleep(args.window)
                    after = proc.cpu_times()
                    parts = pending.get(timeout=300)
                row = summarise(parts, n)
                row["cpu"] = cpu = (
                    100 * (after.user + after.system - before.user - before.system) / args.window
                )
                row["load"] = os.getloadavg()[0]
                row["server_ms"] = server_delays(server, timing, start_at, start_at + args.window)
                rows[n].append(row)
                pli = f"{row['keyframe_requests']}/{row['plis_sent']}" if args.video else "-"
                print(
                    f"{run:>3} {n:>5} {cpu:>12.1f} {cpu / n:>10.2f} {row['rate']:>8.2f}"
                    f" {row['gap']:>14.1f} {fmt(row['server_ms']):>17}"
                    f" {fmt(row['end_ms']):>18} {pli:>7} {row['generator']:>9.1f}"
                    f" {row['load']:>10.2f}"
                    f"{'  LATE: ' + row['late_streams'] if row['late'] else ''}",
                    flush=True,
                )
                if row["late"] and not args.keep_going:
                    break
                time.sleep(1.0)
        manager.shutdown()
    finally:
        server.send_signal(signal.SIGINT)  # lets a profiled server write its profile
        server.wait(30)
        if args.redis:
            forget(args.redis, env["REDIS_PREFIX"])
    print_summary(rows, args, kind)
    return 0


def wait_ready(ready: Any, pending: Any, workers: int, within: float = 300) -> None:
    """Until every worker has its calls flowing; a worker's error is raised at once
    (``pending.get``) rather than after the timeout."""
    deadline = time.monotonic() + within
    while workers:
        try:
            ready.get(timeout=1)
            workers -= 1
        except queue.Empty:
            if pending.ready():
                pending.get()  # raises the worker's exception
                raise RuntimeError("a worker ended before its calls were set up") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"calls not set up within {within:.0f} s") from None


def forget(url: str, prefix: str) -> None:
    """Delete the keys this run left in Redis."""
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


def summarise(parts: list[dict[str, Any]], n: int) -> dict[str, Any]:
    streams = [s for part in parts for s in part["streams"]]
    rate = min(s["rate"] for s in streams)
    gap = max(s["p99_gap_ms"] for s in streams)
    late = [s["kind"] for s in streams if s["rate"] < 0.9 or s["p99_gap_ms"] > 100]
    return {
        "rate": rate,
        "gap": gap,
        "late": bool(late),
        "late_streams": ", ".join(f"{late.count(k)} {k}" for k in RATES if k in late),
        "end_ms": sorted(d for part in parts for d in part["delays_ms"]),
        "plis_sent": sum(part["plis_sent"] for part in parts),
        "keyframe_requests": sum(part["keyframe_requests"] for part in parts),
        "generator": sum(part["cpu"] for part in parts),
    }


def fmt(delays: list[float]) -> str:
    return f"{pct(delays, 0.5):.1f}/{pct(delays, 0.99):.1f}" if delays else "n/a"


def print_summary(
    rows: dict[int, list[dict[str, Any]]], args: argparse.Namespace, kind: str
) -> None:
    """Median of the runs per step, against the targets (docs/benchmarks.md "Calls")."""
    target = TARGET_VIDEO_CALLS if args.video else TARGET_AUDIO_CALLS
    print(
        f"\nsummary, {kind}, median of {args.runs} run(s); targets: >= {target} calls with"
        f" no late stream, server-added p99 < {TARGET_P99_MS:.0f} ms"
        + ("" if args.video else f", < {TARGET_CPU_PER_CALL:.0f} % of a core per call")
    )
    print(
        f"{'calls':>5} {'% core/call':>11} {'min rate':>8} {'p99 gap ms':>10}"
        f" {'server p99 ms':>13} {'end-to-end p99':>14} {'PLI':>9} {'gen CPU %':>9}"
        f" {'late runs':>9} {'load':>5}  verdict"
    )
    best = 0
    for n, runs in rows.items():
        if not runs:
            continue

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        server_p99 = statistics.median(pct(r["server_ms"], 0.99) for r in runs)
        end_p99 = statistics.median(pct(r["end_ms"], 0.99) for r in runs)
        late = sum(r["late"] for r in runs)
        reached = sum(r["keyframe_requests"] for r in runs)
        plis = f"{reached}/{sum(r['plis_sent'] for r in runs)}" if args.video else "-"
        ok = late == 0 and server_p99 < TARGET_P99_MS
        if ok:
            best = max(best, n)
        print(
            f"{n:>5} {med('cpu') / n:>11.2f} {med('rate'):>8.2f} {med('gap'):>10.1f}"
            f" {server_p99:>13.1f} {end_p99:>14.1f} {plis:>9} {med('generator'):>9.1f}"
            f" {late:>6}/{len(runs):<2} {med('load'):>5.1f}"
            f"  {'ok' if ok else 'LATE' if late else 'slow'}"
        )
    print(
        f"largest step with no late stream and server p99 < {TARGET_P99_MS:.0f} ms: {best}"
        f" (target >= {target})"
    )


if __name__ == "__main__":
    sys.exit(main())
