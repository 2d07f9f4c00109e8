"""``teleimagerie worker`` processes for the tests that kill or restart them, as the
Procfile runs them: one database, one Redis prefix, logs kept under the test's
temp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server.core.config import Settings
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
