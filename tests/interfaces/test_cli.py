"""``teleimagerie hl7``, ``hl7 add-sender`` and ``hl7 list-senders`` (docs/hl7.md
"Senders"), the listener as the Procfile runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from asyncio.subprocess import Process

import pytest
from hl7.mllp import open_hl7_connection

from server.cli import main
from server.core.config import Settings
from server.testing import free_port
from tests.conftest import Accounts
from tests.interfaces import messages as m
from tests.interfaces.conftest import ack_code


def test_add_and_list_senders(
    settings: Settings,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    add = ["hl7", "add-sender", "--application", "DPI", "--facility"]
    assert main([*add, "CHU_A", "--establishment", "hopa"]) == 0
    assert main([*add, "CHU_B", "--establishment", "HOPB", "--cert-subject", "dpi.b"]) == 0
    assert main([*add, "CHU_A", "--establishment", "HOPB"]) == 2  # taken
    assert main([*add, "X", "--establishment", "NOWHERE"]) == 2
    assert main([*add, "A|B", "--establishment", "HOPA"]) == 2  # an HL7 delimiter
    capsys.readouterr()
    assert main(["hl7", "list-senders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["DPI", "CHU_A", "HOPA"],
        ["DPI", "CHU_B", "HOPB", "dpi.b"],
    ]


async def hl7_process(settings: Settings, *options: str) -> tuple[Process, int]:
    """DPI/CHU_A registered for HOPA, then ``teleimagerie hl7`` started on a free port."""
    env = dict(os.environ, DATABASE_URL=settings.database_url)
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "hl7", "add-sender", "--application", "DPI",
        "--facility", "CHU_A", "--establishment", "HOPA", env=env,
    )  # fmt: skip
    assert await asyncio.wait_for(add.wait(), 60) == 0
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "hl7", "--host", "127.0.0.1", "--port", str(port),
        *options, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return proc, port


async def test_hl7_process_acknowledges_and_stops_on_sigterm(
    settings: Settings, accounts: Accounts
) -> None:
    proc, port = await hl7_process(settings)
    try:
        assert proc.stderr is not None
        first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 60))
        assert first == {"event": "hl7.listening", "port": port}
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        writer.writeblock(m.adt("A28", m.control_id(), m.pid("CLI1")).encode())
        await writer.drain()
        assert ack_code(await reader.readmessage()) == "AA"
        writer.close()
        await writer.wait_closed()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_several_hl7_processes_share_the_port(settings: Settings, accounts: Accounts) -> None:
    """``--processes 2``: two listeners on one port (SO_REUSEPORT), each answering the
    connections the kernel gives it; SIGTERM stops them all."""
    proc, port = await hl7_process(settings, "--processes", "2")
    try:
        assert proc.stderr is not None
        for _ in range(2):  # each process says it listens, on the same port
            line = json.loads(await asyncio.wait_for(proc.stderr.readline(), 60))
            assert line == {"event": "hl7.listening", "port": port}

        async def send(n: int) -> str:
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            writer.writeblock(m.adt("A28", m.control_id(), m.pid(f"CLIP{n}")).encode())
            await writer.drain()
            code = ack_code(await reader.readmessage())
            writer.close()
            await writer.wait_closed()
            return code

        assert await asyncio.gather(*(send(n) for n in range(8))) == ["AA"] * 8
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
