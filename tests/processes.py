"""``teleimagerie worker`` and ``serve`` processes for the tests that kill or restart
them, as the Procfile runs them: one database, one Redis prefix, logs kept under the
test's temp dir (workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.core.config import Settings
from server.testing import Loopback, free_port
from tests.helpers import REDIS_URL

Start = Callable[[], subprocess.Popen[bytes]]


@contextmanager
def worker_processes(
    settings: Settings, logs: Path, check_logs: bool = True, **env: str
) -> Iterator[Start]:
    """A function that starts one more worker; all are stopped (SIGTERM, then
    SIGKILL after 5 s) on leaving, and with ``check_logs`` no log may hold a
    traceback."""
    started: list[subprocess.Popen[bytes]] = []
    environ = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": settings.redis_prefix,
        "LOG_LEVEL": "WARNING",
        **env,
    }

    def start() -> subprocess.Popen[bytes]:
        exe = Path(sys.executable).parent / "teleimagerie"
        with open(logs / f"worker{len(started)}.log", "wb") as log:
            proc = subprocess.Popen([str(exe), "worker"], env=environ, stdout=log, stderr=log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()  # reaped: a Popen dropped while its child runs is a warning
    for log in sorted(logs.glob("worker*.log")) if check_logs else []:
        text = log.read_text(errors="replace").strip()
        assert "Traceback" not in text, text


@dataclass
class Process(Loopback):
    """One ``teleimagerie serve`` process on its own port."""

    proc: subprocess.Popen[bytes]
    port: int


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0, log: Path | None = None
) -> None:
    """Until the ``teleimagerie serve`` at ``url`` answers (401 on /api/me); raises when
    the process exits first (with the end of its ``log`` when it writes one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if log is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/api/me", timeout=1).status_code == 401:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


@contextmanager
def web_processes(
    settings: Settings, redis_prefix: str, count: int = 2, **env: str
) -> Iterator[list[Process]]:
    """``count`` web processes on one database and one Redis prefix, ready; all are
    terminated on leaving (one already killed by the test is only reaped)."""
    environ = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    processes = []
    for _ in range(count):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)], env=environ
        )
        processes.append(Process(proc, port))
    try:
        for p in processes:
            wait_ready(p.proc, p.url)
        yield processes
    finally:
        for p in processes:
            if p.proc.poll() is None:
                p.proc.terminate()
        for p in processes:
            p.proc.wait(10)
