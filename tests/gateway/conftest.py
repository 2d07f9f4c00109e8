"""Fixtures of the gateway tests: a real listener on a free port over the test
database, real DCMTK tools as subprocesses, exams made through the real API."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from server.composition import app_context
from server.core.config import Settings
from server.core.context import AppContext
from server.gateway.aes import add_ae
from server.gateway.listener import Gateway
from tests.conftest import Accounts
from tests.helpers import exam_payload

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]

if shutil.which("storescu") is None:  # scripts/services.sh installs DCMTK
    pytest.skip("DCMTK is not installed", allow_module_level=True)


@dataclass
class Listener:
    app: AppContext
    gateway: Gateway

    @property
    def port(self) -> int:
        return self.gateway.port

    async def register(self, ae_title: str, establishment: str, host: str | None = None) -> None:
        async with self.app.db() as db:
            await add_ae(self.app, db, ae_title, establishment, host, "test modality")
            await db.commit()


@pytest.fixture
async def listener(settings: Settings, accounts: Accounts) -> AsyncIterator[Listener]:
    """The gateway on 127.0.0.1, a free port, AE title TELEIMAGERIE; CT_HOPA and
    MR_HOPA registered for HOPA, CT_HOPB for HOPB."""
    async with app_context(settings) as app:
        gateway = Gateway(app, host="127.0.0.1", port=0, timeout_s=30)
        gateway.start()
        listener = Listener(app, gateway)
        await listener.register("CT_HOPA", "HOPA")
        await listener.register("MR_HOPA", "HOPA")
        await listener.register("CT_HOPB", "HOPB")
        try:
            yield listener
        finally:
            await asyncio.to_thread(gateway.stop)


@dataclass
class Run:
    code: int
    out: str


async def dcmtk(*args: str, timeout: float = 60) -> Run:
    """A DCMTK tool as a subprocess, without blocking the loop the gateway uses."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(errors="replace"))


async def requested_exam(urg: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    resp = await urg.post("/api/exams", json=exam_payload(**overrides))
    assert resp.status_code == 201, resp.text
    exam: dict[str, Any] = resp.json()
    return exam


async def exam_in_acquisition(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient, **overrides: Any
) -> dict[str, Any]:
    exam = await requested_exam(urg, **overrides)
    base = f"/api/exams/{exam['id']}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    body = {"text": "Scanner cérébral sans injection", "protocol_id": "ct-head-stroke"}
    assert (await rad.post(f"{base}/protocol", json=body)).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    return exam
