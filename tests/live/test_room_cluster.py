"""Two ``teleimagerie serve`` processes sharing Redis and the database (docs/deployment.md)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from server.core.config import Settings
from server.roomclient import RoomClient
from tests.helpers import exam_payload, login
from tests.processes import Process, web_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(settings: Settings, accounts: object, redis_prefix: str) -> Iterator[list[Process]]:
    with web_processes(settings, redis_prefix, PRESENCE_TTL_S="2") as processes:
        yield processes


async def token(base_url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await login(client, username)


async def drain_until(room: RoomClient, last_seq: int) -> list[int]:
    seqs = []
    while not seqs or seqs[-1] < last_seq:
        seqs.append((await room.next_event(timeout=10))["seq"])
    return seqs


async def test_every_member_sees_every_event_once_in_order(cluster: list[Process]) -> None:
    a, b = cluster
    urg, rad, man = (
        await token(a.url, "urg_a"),
        await token(b.url, "rad"),
        await token(a.url, "man_a"),
    )
    async with httpx.AsyncClient(base_url=a.url) as http:
        resp = await http.post(
            "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {urg}"}
        )
        exam_id = resp.json()["id"]
    rooms = [
        RoomClient(a.ws_url, exam_id, urg),
        RoomClient(b.ws_url, exam_id, rad),
        RoomClient(a.ws_url, exam_id, man),
    ]
    for room in rooms:
        await room.connect()
    try:
        # Messages through both processes, concurrently, and a command over HTTP.
        async def talk(room: RoomClient, who: str) -> None:
            for i in range(10):
                await room.chat(f"{who} {i}")

        async with httpx.AsyncClient(base_url=b.url) as http:
            accepted = http.post(
                f"/api/exams/{exam_id}/accept", headers={"Authorization": f"Bearer {rad}"}
            )
            results = await asyncio.gather(
                talk(rooms[0], "urg"), talk(rooms[1], "rad"), talk(rooms[2], "man"), accepted
            )
            assert results[3].status_code == 200
        last = 1 + 30 + 1
        for room in rooms:
            assert await drain_until(room, last) == list(range(1, last + 1))

        # The manipulator drops out, the others go on, it resumes with since.
        await rooms[2].close()
        seen = rooms[2].last_seq
        await rooms[1].chat("protocole dans une minute")
        await rooms[0].chat("merci")
        resumed = RoomClient(b.ws_url, exam_id, man, since=seen)
        await resumed.connect()
        rooms[2] = resumed
        assert await drain_until(resumed, last + 2) == [last + 1, last + 2]
        await rooms[0].chat("encore un")
        assert await drain_until(resumed, last + 3) == [last + 3]
    finally:
        for room in rooms:
            await room.close()


async def test_a_killed_process_leaves_presence_and_loses_nothing(
    cluster: list[Process],
) -> None:
    a, b = cluster
    urg, rad = await token(a.url, "urg_a"), await token(b.url, "rad")
    async with httpx.AsyncClient(base_url=a.url) as http:
        http.headers["Authorization"] = f"Bearer {urg}"
        exam_id = (await http.post("/api/exams", json=exam_payload())).json()["id"]
        async with RoomClient(a.ws_url, exam_id, urg) as watcher:
            doomed = RoomClient(b.ws_url, exam_id, rad)
            await doomed.connect()
            acked = [(await doomed.chat(f"lecture {i}"))["seq"] for i in range(5)]
            while len((await watcher.next_of("presence"))["presence"]) != 2:
                pass
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(5)
            started = time.monotonic()
            while True:
                frame = await watcher.next_of("presence", timeout=30)
                if [p["role"] for p in frame["presence"]] == ["urgentist"]:
                    break
            assert time.monotonic() - started < 30
        events = (await http.get(f"/api/exams/{exam_id}/events")).json()["events"]
        chat_seqs = [e["seq"] for e in events if e["kind"] == "chat.message"]
        assert chat_seqs == acked
