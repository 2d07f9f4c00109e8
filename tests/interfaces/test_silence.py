"""A destination that reads and never answers: the message is tried again under its
control id, and once past OUTBOX_ESCALATE_AFTER_S the coordinators hear of it, once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from server.core.config import Settings
from tests.interfaces.helpers import destination, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import ClientFor, ok


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        outbox_ack_timeout_s=0.2, outbox_retry_base_s=0.1, outbox_escalate_after_s=0
    )


async def test_silence_escalates_once_and_keeps_trying(
    api_for: ClientFor, settings: Settings
) -> None:
    receiver = await Receiver(answer=None).start()
    try:
        await destination(settings, receiver.port, kinds="oru")
        exam, rad = await signed_exam(api_for)
        await receiver.wait_for(3)  # three tries at least
        coord = await api_for("coord")
        async with asyncio.timeout(20):
            while True:
                events = (await ok(await coord.get(f"/api/exams/{exam['id']}/events")))["events"]
                raised = [e for e in events if e["kind"] == "escalation.raised"]
                if raised:
                    break
                await asyncio.sleep(0.05)
        (item,) = (await ok(await rad.get(f"/api/exams/{exam['id']}/deliveries")))["deliveries"]
        assert item["state"] == "retrying" and item["escalated_at"] is not None
        assert [e["body"]["reason"] for e in raised] == ["delivery_silent"]
        assert {str(m.segment("MSH")(10)) for m in receiver.received} == {item["control_id"]}
        # Still owed: the coordinators' list has it.
        listed = (await ok(await coord.get("/api/deliveries")))["deliveries"]
        assert [d["id"] for d in listed] == [item["id"]]
    finally:
        await receiver.stop()
