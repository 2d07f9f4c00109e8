"""One exam's call joined from two ``teleimagerie serve`` processes on one Redis
(docs/calls.md "Several web processes"): real processes, real aiortc participants."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from server.calls.client import CallClient
from server.core.config import Settings
from tests.helpers import exam_payload, login
from tests.processes import Process, web_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(settings: Settings, accounts: object, redis_prefix: str) -> Iterator[list[Process]]:
    with web_processes(
        settings,
        redis_prefix,
        CALL_HOST_ADDRESSES="127.0.0.1",
        CALL_LEASE_S="3",
        CALL_QUALITY_INTERVAL_S="0.5",
    ) as processes:
        yield processes


async def client_on(process: Process, exam_id: str, username: str) -> CallClient:
    async with httpx.AsyncClient(base_url=process.url) as anon:
        token = await login(anon, username)
    return await CallClient(process.ws_url, exam_id, token).connect()


def members(client: CallClient) -> list[str]:
    return sorted(p["role"] for p in (client.state or {}).get("participants", []))


def heard(client: CallClient, n: int = 25) -> bool:
    return any(count >= n for (_, kind), count in client.received.items() if kind == "audio")


async def test_members_on_two_processes_hear_each_other_until_the_holder_dies(
    cluster: list[Process],
) -> None:
    a, b = cluster
    async with httpx.AsyncClient(base_url=a.url) as http:
        token = await login(http, "urg_a")
        resp = await http.post(
            "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {token}"}
        )
        exam_id = resp.json()["id"]
    urg = await client_on(a, exam_id, "urg_a")  # starts the call: process a holds it
    man = await client_on(b, exam_id, "man_a")  # signalling relayed from b to a
    try:
        await urg.join()
        await man.join()
        for client in (urg, man):
            await client.wait_for(lambda c: members(c) == ["manipulator", "urgentist"])
        await urg.wait_for(heard)
        await man.wait_for(heard)
        # Quality frames of the holder reach the member on the other process too.
        await man.wait_for(
            lambda c: any(
                f.get("type") == "call.quality" and len(f["participants"]) == 2 for f in c.frames
            )
        )

        # A hang-up relayed to the holder, and a second join from b.
        await man.hangup()
        await urg.wait_for(lambda c: members(c) == ["urgentist"])
        await man.join()
        await urg.wait_for(lambda c: members(c) == ["manipulator", "urgentist"])
        man.received.clear()
        await man.wait_for(heard)

        # The holder dies: its lease expires, b tells its member the call is lost.
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        await man.wait_for(lambda c: any(e["code"] == "call_lost" for e in c.errors), within=30)
        await man.wait_for(lambda c: members(c) == [])
        assert man.pc is not None
        await man.pc.close()
        man.pc = None
        # The member calls again: process b now holds the call.
        man.errors.clear()
        await man.join()
        await man.wait_for(lambda c: members(c) == ["manipulator"])
        assert man.errors == []
    finally:
        await man.close()
        await urg.close()
