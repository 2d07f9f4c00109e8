"""Real `teleimagerie worker` processes on a real Redis: each escalation once with two
workers, and still once after a worker is SIGKILLed and Redis loses its timers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from server.core.config import Settings
from tests.helpers import REDIS_URL, exam_payload, flush_prefix
from tests.processes import Start, worker_processes
from tests.roster.test_api import ClientFor, add_shift

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_prefix: str) -> Settings:
    return make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix, ack_timeout_s=1)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Start]:
    with worker_processes(settings, tmp_path, ACK_TIMEOUT_S="1") as start:
        yield start


async def levels(client: httpx.AsyncClient, exam_id: str) -> list[int]:
    events = (await client.get(f"/api/exams/{exam_id}/events")).json()["events"]
    return [e["body"]["level"] for e in events if e["kind"] == "escalation.raised"]


async def wait_levels(client: httpx.AsyncClient, exam_id: str, count: int) -> list[int]:
    found: list[int] = []
    for _ in range(450):  # 45 s at most (a loaded CI machine): a guard, not a measure
        if len(found := await levels(client, exam_id)) >= count:
            break
        await asyncio.sleep(0.1)
    return found


async def test_escalations_fire_once_through_kills_and_flushes(
    settings: Settings, client_for: ClientFor, workers: Start
) -> None:
    coord, urg = await client_for("coord"), await client_for("urg_a")
    await add_shift(coord, radiologist="rad2", role="backup")
    first, _second = workers(), workers()

    # Two workers claim from the same timers: each level is raised once.
    exam_a = (await urg.post("/api/exams", json=exam_payload())).json()["id"]
    assert await wait_levels(coord, exam_a, 2) == [1, 2]

    # Mid-way through the next one: SIGKILL a worker and lose every Redis key.
    exam_b = (await urg.post("/api/exams", json=exam_payload())).json()["id"]
    assert await wait_levels(coord, exam_b, 1) == [1]
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    flush_prefix(settings.redis_prefix)
    workers()  # rebuilds the pending level 2 from SQL at start
    assert await wait_levels(coord, exam_b, 2) == [1, 2]
    events = (await coord.get(f"/api/exams/{exam_b}/events")).json()["events"]
    raised = [e["body"] for e in events if e["kind"] == "escalation.raised"]
    assert raised[0]["notified"] == [raised[0]["notified"][0]] and raised[1]["notified"] == [
        "coordinator"
    ]
    assert await levels(coord, exam_a) == [1, 2]
