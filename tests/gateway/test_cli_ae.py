"""``teleimagerie ae add|list`` (docs/gateway.md "Association acceptance")."""

from __future__ import annotations

import pytest

from server.cli import main
from server.core.config import Settings
from tests.conftest import Accounts


def test_ae_add_and_list(
    settings: Settings,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DICOM_STORAGE", str(settings.dicom_storage))
    assert main(["ae", "add", "CT_URG", "--establishment", "hopa", "--host", "10.0.0.0/8"]) == 0
    assert main(["ae", "add", "DX_B", "--establishment", "HOPB", "--description", "Table"]) == 0
    assert main(["ae", "add", "CT_URG", "--establishment", "HOPB"]) == 2  # taken
    assert main(["ae", "add", "X", "--establishment", "NOWHERE"]) == 2
    capsys.readouterr()
    assert main(["ae", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["CT_URG", "HOPA", "10.0.0.0/8"],
        ["DX_B", "HOPB", "*"],
    ]


@pytest.mark.slow
async def test_dicom_process_answers_and_stops_on_sigterm(
    settings: Settings, accounts: Accounts
) -> None:
    """``teleimagerie dicom`` as the Procfile runs it: JSON log lines, C-ECHO, SIGTERM."""
    import asyncio
    import json
    import os
    import signal
    import socket
    import sys

    from tests.gateway.conftest import dcmtk

    with socket.socket() as probe:  # a free port for the child to bind
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, DATABASE_URL=settings.database_url, DICOM_PORT=str(port))
    env["DICOM_STORAGE"] = str(settings.dicom_storage)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "dicom", "--host", "127.0.0.1",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 60))
        assert first == {"event": "dicom.listening", "port": port, "ae_title": "TELEIMAGERIE"}
        echo = await dcmtk("echoscu", "-aet", "NOT_HERE", "-aec", "TELEIMAGERIE", "127.0.0.1",
                           str(port))  # fmt: skip
        assert echo.code != 0 and "Calling AE Title Not Recognized" in echo.out
        line = json.loads(await asyncio.wait_for(proc.stderr.readline(), 30))
        assert line["event"] == "dicom.rejected" and line["calling_ae"] == "NOT_HERE"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
