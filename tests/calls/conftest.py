"""Fixtures of the call tests: a live server with ICE on loopback, an exam, room clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from server.calls.client import CallClient
from server.calls.manager import CallManager
from server.core.config import Settings
from server.testing import LiveServer
from tests.helpers import exam_payload, login

Join = Callable[..., Awaitable[CallClient]]


@pytest.fixture
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    # Loopback only: no STUN server is reachable here, and none is configured.
    # ``parametrize("settings", ["transcode"], indirect=True)`` selects CALL_MEDIA;
    # a dict parameter gives other settings.
    param = getattr(request, "param", "forward")
    overrides = param if isinstance(param, dict) else {"call_media": param}
    return make_settings(call_host_addresses=("127.0.0.1",), call_max_participants=3, **overrides)


def calls_of(server: LiveServer) -> CallManager:
    manager: CallManager = server._server.config.app.state.ctx.calls
    return manager


@pytest.fixture
async def exam_id(http: httpx.AsyncClient) -> str:
    http.headers["Authorization"] = f"Bearer {await login(http, 'urg_a')}"
    resp = await http.post("/api/exams", json=exam_payload())
    assert resp.status_code == 201, resp.text
    exam: str = resp.json()["id"]
    return exam


@pytest.fixture
async def open_room(
    live_server: LiveServer, http: httpx.AsyncClient, exam_id: str
) -> AsyncIterator[Join]:
    """``await open_room("man_a", video=True)``: a CallClient in the exam's room (other
    keyword arguments go to CallClient)."""
    clients: list[CallClient] = []

    async def make(username: str, *, video: bool = False, **options: Any) -> CallClient:
        async with httpx.AsyncClient(base_url=live_server.url) as anon:
            token = await login(anon, username)
        client = CallClient(live_server.ws_url, exam_id, token, video=video, **options)
        clients.append(client)
        return await client.connect()

    yield make
    for client in clients:
        await client.close()
