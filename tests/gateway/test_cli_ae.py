"""``teleimagerie ae add|list`` (issue 9)."""

from __future__ import annotations

import pytest

from server.cli import main
from server.config import Settings
from tests.conftest import Accounts


def test_ae_add_and_list(
    settings: Settings,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
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
