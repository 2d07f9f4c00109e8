"""``teleimagerie pacs set|list|remove`` (docs/priors.md "Configuration")."""

from __future__ import annotations

import pytest

from server.cli import main
from server.core.config import Settings
from tests.conftest import Accounts


def test_pacs_set_list_and_remove(
    settings: Settings,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DICOM_AE_TITLE", "TELERADIO")
    base = ["pacs", "set", "--host", "pacs.hopa.local", "--port", "104"]
    assert main([*base, "--establishment", "hopa", "--ae-title", "PACS_A"]) == 0
    assert main([*base, "--establishment", "HOPB", "--ae-title", "PACS_B", "--years", "2",
                 "--max-studies", "5", "--calling-ae-title", "TI_B"]) == 0  # fmt: skip
    # Set again: replaced, not doubled.
    assert main([*base, "--establishment", "HOPA", "--ae-title", "PACS_A2"]) == 0
    # Refused, with a message and exit code 2: unknown site, bad AE title, bad port.
    capsys.readouterr()
    assert main([*base, "--establishment", "NOWHERE", "--ae-title", "X"]) == 2
    assert main([*base, "--establishment", "HOPA", "--ae-title", "A\\B"]) == 2
    assert main(["pacs", "set", "--host", "h", "--port", "0", "--establishment", "HOPA",
                 "--ae-title", "P"]) == 2  # fmt: skip
    assert "port" in capsys.readouterr().err
    assert main(["pacs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:5] for line in lines] == [
        ["HOPA", "PACS_A2", "pacs.hopa.local:104", "as", "TELERADIO"],
        ["HOPB", "PACS_B", "pacs.hopa.local:104", "as", "TI_B"],
    ]
    assert "2 years, 5 studies" in lines[1]
    assert main(["pacs", "remove", "--establishment", "HOPB"]) == 0
    assert main(["pacs", "remove", "--establishment", "HOPB"]) == 2
    capsys.readouterr()
    assert main(["pacs", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["HOPA"]
