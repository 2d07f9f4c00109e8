"""The HTTP side of calls: ICE configuration and an exam's call state, scoped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from server.core.config import Settings
from tests.helpers import exam_payload

Client = Callable[[str], Awaitable[httpx.AsyncClient]]
TURN = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(ice_servers=(TURN,), call_max_participants=2)


async def test_participants_get_the_ice_servers(client_for: Client) -> None:
    urg = await client_for("urg_a")
    resp = await urg.get("/api/calls/config")
    assert resp.status_code == 200
    assert resp.json() == {"ice_servers": [TURN], "max_participants": 2}


async def test_ice_servers_need_a_participant(client_for: Client, http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/calls/config")).status_code == 401
    admin = await client_for("admin")
    assert (await admin.get("/api/calls/config")).status_code == 403


async def test_call_state_is_scoped_to_the_exam(client_for: Client) -> None:
    urg = await client_for("urg_a")
    exam = (await urg.post("/api/exams", json=exam_payload())).json()
    resp = await urg.get(f"/api/exams/{exam['id']}/call")
    assert resp.status_code == 200
    assert resp.json() == {"type": "call.state", "participants": [], "recording": False}
    other = await client_for("urg_b")
    assert (await other.get(f"/api/exams/{exam['id']}/call")).status_code == 404
    admin = await client_for("admin")
    assert (await admin.get(f"/api/exams/{exam['id']}/call")).status_code == 404
