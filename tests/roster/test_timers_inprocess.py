"""With the memory engine the web process fires the timers itself (no worker)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.core.config import Settings
from server.testing import LiveServer
from tests.helpers import exam_payload
from tests.roster.test_api import ClientFor, add_shift, channel, next_notification


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(ack_timeout_s=1)


async def test_in_process_timers_escalate_to_backup_then_coordinators(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    coord, rad2 = await client_for("coord"), await client_for("rad2")
    await add_shift(coord, radiologist="rad2", role="backup")
    async with channel(live_server, rad2) as backup_ws, channel(live_server, coord) as coord_ws:
        urg = await client_for("urg_a")
        exam_id = (await urg.post("/api/exams", json=exam_payload())).json()["id"]
        first = await next_notification(backup_ws, "escalation.raised")
        assert (first["body"]["level"], first["body"]["reason"]) == (1, "not_accepted")
        second = await next_notification(coord_ws, "escalation.raised")
        assert second["body"]["level"] in (0, 2)
        if second["body"]["level"] == 0:  # nobody primary: the routing alert came first
            second = await next_notification(coord_ws, "escalation.raised")
        assert second["body"]["level"] == 2
    events = (await urg.get(f"/api/exams/{exam_id}/events")).json()["events"]
    levels = [e["body"]["level"] for e in events if e["kind"] == "escalation.raised"]
    assert levels == [1, 2]
