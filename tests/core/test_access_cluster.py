"""Sockets follow the session across processes (docs/rooms.md "Closing"): two
``teleimagerie serve`` processes and the CLI share Redis and the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from rooms.types import CloseCode
from server.core.config import Settings
from server.roomclient import RoomClient
from tests.core.test_access import WITHIN, closing
from tests.helpers import REDIS_URL, exam_payload
from tests.live.test_room_cluster import cluster, token  # noqa: F401
from tests.processes import Process

pytestmark = pytest.mark.slow


async def new_exam(process: Process, urg: str) -> str:
    async with httpx.AsyncClient(base_url=process.url) as http:
        resp = await http.post(
            "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {urg}"}
        )
        exam_id: str = resp.json()["id"]
        return exam_id


async def test_logout_on_one_process_closes_the_socket_on_the_other(
    cluster: list[Process],  # noqa: F811
) -> None:
    a, b = cluster
    urg = await token(a.url, "urg_a")
    exam_id = await new_exam(a, urg)
    room = RoomClient(b.ws_url, exam_id, urg)
    await room.connect()
    async with httpx.AsyncClient(base_url=a.url) as http:
        resp = await http.delete("/api/session", headers={"Authorization": f"Bearer {urg}"})
        assert resp.status_code == 204
    code, reason, _ = await closing(room.ws)  # type: ignore[arg-type]
    assert (code, reason) == (CloseCode.SESSION_ENDED, "logged out")


async def test_the_loser_on_another_process_is_told_who_took_the_exam(
    cluster: list[Process],  # noqa: F811
) -> None:
    a, b = cluster
    urg, rad, rad2 = (
        await token(a.url, "urg_a"),
        await token(a.url, "rad"),
        await token(b.url, "rad2"),
    )
    exam_id = await new_exam(a, urg)
    loser = RoomClient(b.ws_url, exam_id, rad2)
    await loser.connect()
    async with httpx.AsyncClient(base_url=a.url) as http:
        resp = await http.post(
            f"/api/exams/{exam_id}/accept", headers={"Authorization": f"Bearer {rad}"}
        )
        assert resp.status_code == 200
    code, reason, frames = await closing(loser.ws)  # type: ignore[arg-type]
    assert (code, reason) == (CloseCode.FORBIDDEN, "taken by RAD")
    assert [f["by"]["display_name"] for f in frames if f["type"] == "access.lost"] == ["RAD"]


async def test_a_deactivation_from_the_cli_closes_the_sockets_of_every_server(
    cluster: list[Process],  # noqa: F811
    settings: Settings,
    redis_prefix: str,
) -> None:
    a, b = cluster
    urg = await token(a.url, "urg_a")
    exam_id = await new_exam(a, urg)
    rooms = [RoomClient(p.ws_url, exam_id, urg) for p in (a, b)]
    for room in rooms:
        await room.connect()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
    }
    command = [sys.executable, "-m", "server.cli", "user", "deactivate", "urg_a"]
    cli = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.DEVNULL)
    assert await cli.wait() == 0
    for room in rooms:
        assert (await closing(room.ws, WITHIN))[0] == CloseCode.SESSION_ENDED  # type: ignore[arg-type]
