"""A ``teleimagerie serve`` killed in the middle of a STOW, restarted: the storage
and the index agree again (dicomweb/reconcile.py, docs/dicomweb.md "Start-up
reconciliation")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from dicomweb.samples import ct_series, multipart
from server.core.config import Settings
from server.testing import Loopback, free_port
from tests.archive.test_archive import exam_in_acquisition
from tests.helpers import login, of_exam
from tests.processes import wait_ready

pytestmark = pytest.mark.slow

SPOOLED = 40 * 1024 * 1024  # past stow.SPOOL_BYTES: the part is spooled to a temp file


class Server(Loopback):
    """``teleimagerie serve`` in a process of its own, its log in a file."""

    def __init__(self, settings: Settings, storage: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "DICOM_STORAGE": str(storage),
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "1024",
            "ARGON2_PARALLELISM": "1",
            "LOG_LEVEL": "INFO",
        }
        env.pop("REDIS_URL", None)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=out,
            )

    def wait_ready(self) -> None:
        wait_ready(self.proc, self.url, log=self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


async def client(server: Server, username: str) -> httpx.AsyncClient:
    c = httpx.AsyncClient(base_url=server.url, timeout=30)
    c.headers["Authorization"] = f"Bearer {await login(c, username)}"
    return c


async def paths(settings: Settings, query: str) -> set[str]:
    """The first column of ``query``'s rows, read as another client would."""
    url = settings.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split(":///", 1)[1]) as conn:
            return {r[0] for r in conn.execute(query)}
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return {r[0] for r in await conn.fetch(query)}
    finally:
        await conn.close()


async def indexed_paths(settings: Settings) -> set[str]:
    return await paths(settings, "SELECT path FROM dicomweb_instances")


def in_place(storage: Path) -> set[str]:
    return {str(p.relative_to(storage)) for p in storage.glob("??/*/*/*.dcm")}


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 90) -> None:
    """Wait for ``check`` (a loaded machine can be slow), or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not reached in {seconds:.0f} s: {what}"
        await asyncio.sleep(0.05)


async def test_a_server_killed_during_a_stow_is_reconciled_at_restart(
    settings: Settings, accounts: object, tmp_path: Path, servers: list[Server]
) -> None:
    # The server's own storage: nothing in this process may hold it open.
    storage, log = tmp_path / "archive", tmp_path / "serve.log"
    first = Server(settings, storage, log)
    servers.append(first)
    await asyncio.to_thread(first.wait_ready)
    urg, rad, man = [await client(first, u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    await urg.aclose()

    # A real series, then a large part that never ends. Half the series is indexed
    # first; the server is killed while it receives the large part, the other half
    # staged, placed or indexed as the timing has it.
    slices = list(ct_series(24, size=128, **of_exam(exam)))
    body, ctype = multipart([*slices, slices[0] + b"\0" * SPOOLED])
    boundary = b"--" + ctype.split("boundary=")[1].strip('"').encode()
    # Through the delimiter after the twelfth slice: a part ends when the next
    # delimiter is seen, so twelve parts can be indexed before the rest is sent.
    half = body.index(boundary, body.index(slices[11]) + len(slices[11])) + len(boundary) + 2
    cut = len(body) - 4 * 1024 * 1024  # in the middle of the last part's bytes
    indexed, sent = asyncio.Event(), asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        for begin, end in ((0, half), (half, cut)):
            for start in range(begin, end, 256 * 1024):
                yield body[start : min(start + 256 * 1024, end)]
            await indexed.wait()
        sent.set()
        await asyncio.sleep(3600)  # the rest never comes

    request = asyncio.create_task(
        man.post("/dicomweb/studies", content=upload(), headers={"Content-Type": ctype})
    )

    async def twelve_indexed() -> bool:
        return len((await rad.get("/dicomweb/instances")).json()) == 12

    await until(twelve_indexed, "the first half of the series indexed")
    indexed.set()
    await rad.aclose()
    await asyncio.wait_for(sent.wait(), 60)
    tmp = storage / "tmp"

    async def spooled() -> bool:
        sizes = []
        for p in tmp.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):  # placed meanwhile
                sizes.append(p.stat().st_size)
        return any(size > SPOOLED // 2 for size in sizes)

    await until(spooled, "the large part half written to the temp dir")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    request.cancel()
    with pytest.raises((asyncio.CancelledError, httpx.TransportError)):
        await request
    await man.aclose()
    left = sorted(p.name for p in tmp.glob("*.part"))
    assert left, "the killed server left no temp file: nothing was tested"
    assert all(n.startswith(f"{first.proc.pid}@") for n in left)
    rows_before = await indexed_paths(settings)
    assert len(rows_before) >= 12

    second = Server(settings, storage, log)
    servers.append(second)
    await asyncio.to_thread(second.wait_ready)

    def summaries() -> list[str]:
        return [ln for ln in log.read_text().splitlines() if '"dicomweb.reconciled"' in ln]

    async def reconciled() -> bool:
        return bool(summaries())

    await until(reconciled, "the reconciliation summary logged")
    summary = json.loads(summaries()[-1])

    # No temp file left; every file in place has its row and every row its file.
    assert list(tmp.glob("*.part")) == []
    rows = await indexed_paths(settings)
    assert rows == rows_before  # nothing was indexed blindly, nothing lost
    assert in_place(storage) == rows
    assert summary["temps_deleted"]["count"] >= len(left)
    assert {f"tmp/{n}" for n in left} <= set(summary["temps_deleted"]["paths"])
    assert summary["missing"]["count"] == 0
    # Whatever was in place without its row waits in the reconciliation queue.
    queued = await paths(
        settings, "SELECT path FROM reconciliation_items WHERE reason = 'interrupted_store'"
    )
    assert len(queued) == summary["quarantined"]["count"]
    assert all((storage / q).is_file() for q in queued)
    assert "PatientName" not in log.read_text() and "Rubo" not in log.read_text()
    # The archive still serves what was indexed.
    man = await client(second, "man_a")
    try:
        found = (await man.get("/dicomweb/instances")).json() if rows else []
        assert len(found) == len(rows)
    finally:
        await man.aclose()
