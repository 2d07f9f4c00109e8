"""A real `teleimagerie worker` killed between sending a report and its acknowledgement:
nothing is lost, and the next worker's repeat carries the same control id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.core.config import Settings
from tests.helpers import REDIS_URL
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import ClientFor

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_prefix: str) -> Settings:
    # With Redis the web process leaves the outbox to the worker processes.
    return make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": settings.redis_prefix,
        "OUTBOX_ACK_TIMEOUT_S": "1",
        "LOG_LEVEL": "WARNING",
    }

    def start() -> subprocess.Popen[bytes]:
        exe = Path(sys.executable).parent / "teleimagerie"
        with open(tmp_path / f"worker{len(started)}.log", "wb") as log:
            proc = subprocess.Popen([str(exe), "worker"], env=env, stdout=log, stderr=log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_worker_killed_before_the_ack_loses_nothing(
    settings: Settings, api_for: ClientFor, workers: Callable[[], subprocess.Popen[bytes]]
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
