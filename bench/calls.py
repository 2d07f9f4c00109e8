"""Server CPU per relayed audio call, and how many concurrent calls one process carries.

    .venv/bin/python bench/calls.py [--steps 1,2,4,8,16,24,32] [--workers 2] [--window 6]
        [--media forward|transcode]

The server runs as its own process (``teleimagerie serve``, SQLite, memory engine,
ICE on 127.0.0.1); the aiortc clients run in ``--workers`` other processes so that
their encoding is not counted against the server. For each step N, N two-party
calls (each in its own exam, a 440 Hz tone both ways) are set up, then during a
measurement window the server's CPU time is read from psutil and every client
records when each relayed audio frame arrives (encoded: the clients count the Opus
frames without decoding them, so that they are light load generators). A step is
"late" when any stream delivered fewer than 90 % of its 50 frames a second or had a
gap over 100 ms (p99); the benchmark stops at the first late step (unless
--keep-going).

Delay added by the server: both members of a call live in the same client process,
so one clock sees an Opus packet leave the sender's RTCRtpSender and the same
packet (the same payload bytes: forwarding does not re-encode) reach the other
member's RTCRtpReceiver. That is the server's share of mouth-to-ear (plus loopback
UDP and the client's own event loop), without the encoders, decoders and the
listener's jitter buffer that are the same with or without a server. The transcoding
relay re-encodes, so its payloads never match and no delay is printed for it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiortc import RTCRtpReceiver, RTCRtpSender

ROOT = Path(__file__).resolve().parent.parent
# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(ROOT)

from server.calls.client import CallClient  # noqa: E402
from server.calls.manager import restrict_host_addresses  # noqa: E402
from server.testing import free_port  # noqa: E402
from tests.helpers import PASSWORD, exam_payload, login  # noqa: E402

FRAME_S = 0.020


class PacketClock:
    """When each Opus payload left a sender and reached a receiver (one process)."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}  # payload -> its latest send
        self.delays: list[tuple[float, float]] = []  # (arrival, arrival - send)
        clock = self
        next_frame = RTCRtpSender._next_encoded_frame
        handle = RTCRtpReceiver._handle_rtp_packet

        async def timed_frame(sender: RTCRtpSender, codec: Any) -> Any:
            frame = await next_frame(sender, codec)
            if frame is not None and sender.kind == "audio":
                now = time.monotonic()
                for payload in frame.payloads:
                    clock.sent[bytes(payload)] = now
            return frame

        async def timed_packet(receiver: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
            sent = clock.sent.get(packet.payload)
            if sent is not None:
                now = time.monotonic()
                clock.delays.append((now, now - sent))
            await handle(receiver, packet, arrival_time_ms)

        RTCRtpSender._next_encoded_frame = timed_frame  # type: ignore[method-assign]
        RTCRtpReceiver._handle_rtp_packet = timed_packet  # type: ignore[method-assign]


def prepare(env: dict[str, str]) -> None:
    """Migrate and add one establishment with an urgentist and a manipulator."""
    bin_ = Path(sys.executable).parent
    subprocess.run([bin_ / "teleimagerie", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [bin_ / "teleimagerie", "establishment", "add", "BENCH", "Bench"],
        env=env,
        check=True,
        capture_output=True,
    )
    for user, role in (("urg", "urgentist"), ("man", "manipulator")):
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


async def run_calls(
    base: str, exams: list[str], tokens: tuple[str, str], sync: Any, window: float
) -> list[dict[str, float]]:
    """Client worker: join every exam's call as both users, measure, hang up."""
    ready, start = sync
    clock = PacketClock()
    restrict_host_addresses(("127.0.0.1",))
    ws = base.replace("http://", "ws://")
    pairs = []
    for exam in exams:
        a = await CallClient(ws, exam, tokens[0], decode=False).connect()
        b = await CallClient(ws, exam, tokens[1], decode=False).connect()
        await a.join()
        await b.join()
        pairs.append((a, b))
    for a, b in pairs:  # media flows both ways before the window opens
        await a.wait_for(lambda c: sum(c.received.values()) >= 25, 30)
        await b.wait_for(lambda c: sum(c.received.values()) >= 25, 30)
    ready.put(len(pairs))
    while start.value == 0.0:  # noqa: ASYNC110 - a value shared across processes
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, start.value - time.time()))
    t0 = time.monotonic()
    await asyncio.sleep(window)
    t1 = time.monotonic()
    results = []
    for a, b in pairs:
        for client in (a, b):
            for times in client.arrivals.values():
                inside = [t for t in times if t0 <= t <= t1]
                gaps = sorted(y - x for x, y in zip(inside, inside[1:], strict=False)) or [window]
                results.append(
                    {
                        "rate": len(inside) * FRAME_S / window,
                        "p99_gap_ms": 1000 * gaps[int(0.99 * (len(gaps) - 1))],
                    }
                )
            if not client.arrivals:
                results.append({"rate": 0.0, "p99_gap_ms": 1000 * window})
    delays = [d for t, d in clock.delays if t0 <= t <= t1]
    results.append({"delays_ms": [1000 * d for d in delays]})  # type: ignore[dict-item]
    for a, b in pairs:
        await a.hangup()
        await b.hangup()
        await a.close()
        await b.close()
    return results


def worker(args: tuple[str, list[str], tuple[str, str], Any, float]) -> list[dict[str, Any]]:
    return asyncio.run(run_calls(*args))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,2,4,8,16,24,32,48")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument(
        "--keep-going", action="store_true", help="run every step, even after a late one"
    )
    parser.add_argument("--media", choices=("forward", "transcode"), default="forward")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="ti-bench-calls-"))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "DICOM_STORAGE": str(tmp / "dicom"),
        "CALL_HOST_ADDRESSES": "127.0.0.1",
        "CALL_MAX_PARTICIPANTS": "2",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
        "CALL_MEDIA": args.media,
    }
    env.pop("REDIS_URL", None)
    prepare(env)
    bin_ = Path(sys.executable).parent
    command = [str(bin_ / "teleimagerie"), "serve", "--port", str(port)]
    if os.environ.get("BENCH_PROFILE"):  # profile the server's event loop thread
        command = [sys.executable, "-m", "cProfile", "-o", os.environ["BENCH_PROFILE"], *command]
    server = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/api/protocols", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)

        async def setup() -> tuple[tuple[str, str], list[str]]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                urg = await login(http, "urg")
                man = await login(http, "man")
                http.headers["Authorization"] = f"Bearer {urg}"
                exams = []
                for _ in range(max(steps)):
                    resp = await http.post("/api/exams", json=exam_payload())
                    exams.append(resp.json()["id"])
            return (urg, man), exams

        tokens, exams = asyncio.run(setup())
        proc = psutil.Process(server.pid)
        print(f"media: {args.media}; load average before: {load()}")
        print(
            f"{'calls':>5} {'server CPU %':>12} {'% per call':>10} {'min rate':>8} "
            f"{'max p99 gap ms':>14} {'added p50/p99 ms':>16} {'load 1 min':>10}"
        )
        before = proc.cpu_times()
        time.sleep(args.window)
        after = proc.cpu_times()
        idle = 100 * (after.user + after.system - before.user - before.system) / args.window
        print(f"{0:>5} {idle:>12.1f}   (server idle, no call)")
        best, seen_late = 0, False
        ctx = multiprocessing.get_context("spawn")
        manager = ctx.Manager()
        for n in steps:
            ready, start = manager.Queue(), manager.Value("d", 0.0)
            shares = [exams[i : n : args.workers] for i in range(args.workers)]
            jobs = [(base, share, tokens, (ready, start), args.window) for share in shares if share]
            with ctx.Pool(len(jobs)) as pool:
                pending = pool.map_async(worker, jobs)
                for _ in jobs:
                    ready.get(timeout=120)
                start.value = start_at = time.time() + 0.5
                time.sleep(max(0.0, start_at - time.time()))
                before = proc.cpu_times()
                time.sleep(args.window)
                after = proc.cpu_times()
                parts = [s for part in pending.get(timeout=120) for s in part]
            streams = [s for s in parts if "rate" in s]
            delays = sorted(d for s in parts for d in s.get("delays_ms", []))
            added = (
                f"{delays[len(delays) // 2]:.1f}/{delays[int(0.99 * (len(delays) - 1))]:.1f}"
                if delays
                else "n/a"
            )
            cpu = 100 * (after.user + after.system - before.user - before.system) / args.window
            low = min(s["rate"] for s in streams)
            gap = max(s["p99_gap_ms"] for s in streams)
            late = low < 0.9 or gap > 100
            print(
                f"{n:>5} {cpu:>12.1f} {cpu / n:>10.2f} {low:>8.2f} {gap:>14.1f}"
                f" {added:>16} {os.getloadavg()[0]:>10.2f}{'  LATE' if late else ''}",
                flush=True,
            )
            if late:
                seen_late = True
                if not args.keep_going:
                    break
            elif not seen_late:
                best = n
            time.sleep(1.0)
        manager.shutdown()
        print(f"max concurrent 2-party audio calls without late frames: {best}")
    finally:
        server.send_signal(signal.SIGINT)  # lets a profiled server write its profile
        server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
