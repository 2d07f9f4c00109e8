"""What failing logins cost everyone else: `GET /api/me` latency, quiet and while
eight clients send wrong passwords as fast as the server answers them.

Password checks are Argon2id with the production parameters (RFC 9106 low-memory
profile, docs/configuration.md). The server is a real `teleimagerie serve`, set up
through the CLI only, so the same script measures any checkout:

    .venv/bin/python bench/logins.py [--tree PATH] [--loops 8] [--requests 200]

`--tree` runs that checkout's `.venv/bin/teleimagerie` (default: this one). The
throttle is opened wide (LOGIN_FREE_FAILURES, LOGIN_MAX_FAILURES_*) so that every
attempt pays its Argon2 verification: the figure is the event loop's, not the
throttle's. Figures in docs/benchmarks.md ("Logins").
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile  # noqa: E402
from server.testing import free_port  # noqa: E402

PASSWORD = "bench-password-2026"  # noqa: S105  (a throw-away account)


def cli(tree: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [str(tree / ".venv/bin/teleimagerie"), *args],
        input=stdin,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )


async def latencies(client: httpx.AsyncClient, token: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        out.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, resp.text
    return out


async def attack(client: httpx.AsyncClient, stop: asyncio.Event, counts: list[int]) -> None:
    while not stop.is_set():
        resp = await client.post("/api/session", json={"username": "doc", "password": "wrong"})
        assert resp.status_code == 401, resp.text
        counts[0] += 1


async def measure(url: str, loops: int, requests: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        resp = await client.post("/api/session", json={"username": "doc", "password": PASSWORD})
        token = resp.json()["token"]
        await latencies(client, token, 20)  # warm-up
        quiet = await latencies(client, token, requests)
        stop, counts = asyncio.Event(), [0]
        attackers = [asyncio.create_task(attack(client, stop, counts)) for _ in range(loops)]
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        loaded = await latencies(client, token, requests)
        elapsed = time.perf_counter() - start
        stop.set()
        await asyncio.gather(*attackers)
    return {
        "quiet_p50": percentile(quiet, 50),
        "quiet_p95": percentile(quiet, 95),
        "loaded_p50": percentile(loaded, 50),
        "loaded_p95": percentile(loaded, 95),
        "failed_logins_per_s": counts[0] / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "DICOM_STORAGE": f"{tmp}/dicom",
            "LOG_LEVEL": "WARNING",
            "LOGIN_FREE_FAILURES": "1000000000",
            "LOGIN_MAX_FAILURES_USER": "1000000000",
            "LOGIN_MAX_FAILURES_ADDR": "1000000000",
        }
        env.pop("REDIS_URL", None)
        cli(args.tree, env, "migrate")
        cli(args.tree, env, "establishment", "add", "HOPA", "Hôpital A")
        cli(args.tree, env, "user", "add", "doc", "--role", "urgentist", "--establishment",
            "HOPA", stdin=PASSWORD + "\n")  # fmt: skip
        server = subprocess.Popen(
            [str(args.tree / ".venv/bin/teleimagerie"), "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
        )
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            figures = asyncio.run(measure(f"http://127.0.0.1:{port}", args.loops, args.requests))
        finally:
            server.terminate()
            server.wait(10)
    print(f"tree: {args.tree}")
    print(
        f"GET /api/me quiet: p50 {figures['quiet_p50']:.1f} ms, p95 {figures['quiet_p95']:.1f} ms"
    )
    print(
        f"with {args.loops} failing-login loops: p50 {figures['loaded_p50']:.1f} ms,"
        f" p95 {figures['loaded_p95']:.1f} ms"
        f" ({figures['failed_logins_per_s']:.1f} failed logins/s answered)"
    )


if __name__ == "__main__":
    main()
