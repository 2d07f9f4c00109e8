"""A real `teleimagerie worker` killed between sending a report and its acknowledgement:
nothing is lost, and the next worker's repeat carries the same control id."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.core.config import Settings
from tests.helpers import REDIS_URL
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.processes import Start, worker_processes
from tests.reports.helpers import ClientFor

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_prefix: str) -> Settings:
    # With Redis the web process leaves the outbox to the worker processes.
    return make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Start]:
    with worker_processes(settings, tmp_path, check_logs=False, OUTBOX_ACK_TIMEOUT_S="1") as start:
        yield start


async def test_worker_killed_before_the_ack_loses_nothing(
    settings: Settings, api_for: ClientFor, workers: Start
) -> None:
    receiver = await Receiver(answer=None).start()  # reads, never answers
    try:
        await destination(settings, receiver.port, kinds="oru")
        exam, rad = await signed_exam(api_for)
        first = workers()
        (sent,) = await receiver.wait_for(1, limit_s=45)
        first.send_signal(signal.SIGKILL)  # sent, not acknowledged
        first.wait(10)
        receiver.answer = "AA"
        workers()
        (done,) = await settled(rad, exam["id"], limit_s=45)
        assert done["state"] == "acknowledged"
        control_ids = [str(m.segment("MSH")(10)) for m in receiver.received]
        # Every copy is the same message under the same control id; after the AA, no more.
        assert control_ids == [done["control_id"]] * len(control_ids)
        assert len(control_ids) >= 2
        assert {str(m) for m in receiver.received} == {str(sent)}
    finally:
        await receiver.stop()
