"""``teleimagerie pacs set|list|remove`` (docs/priors.md "Configuration")."""

from __future__ import annotations

import io
from pathlib import Path

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


def test_pacs_set_by_move_or_dicomweb(
    settings: Settings,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``--retrieve move`` for a DICOM PACS; ``--dicomweb URL`` instead of an AE title,
    host and port, the password or token read from stdin and never listed."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    base = ["pacs", "set", "--host", "pacs.hopa.local", "--port", "104", "--ae-title", "PACS_A"]
    assert main([*base, "--establishment", "HOPA", "--retrieve", "move"]) == 0
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("the-token\n"))
    web = [
        "pacs",
        "set",
        "--establishment",
        "HOPB",
        "--dicomweb",
        "https://pacs.hopb.local/dicom-web",
    ]
    assert main([*web, "--auth", "bearer", "--ca-file", str(ca)]) == 0
    capsys.readouterr()
    assert main(["pacs", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["HOPA", "PACS_A", "pacs.hopa.local:104", "as", "TELEIMAGERIE"]
    assert "C-MOVE" in lines[0]
    assert lines[1].split()[:5] == [
        "HOPB",
        "DICOMweb",
        "https://pacs.hopb.local/dicom-web",
        "auth",
        "bearer",
    ]
    assert "the-token" not in out
    # Refused with exit code 2: both kinds at once, basic without a user, no secret,
    # credentials in the URL, a CA for plain http.
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main([*web, "--host", "h"]) == 2
    assert main([*web, "--auth", "basic"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main([*web, "--auth", "bearer"]) == 2
    assert main(["pacs", "set", "--establishment", "HOPB", "--dicomweb", "https://u:p@h/"]) == 2
    assert (
        main(
            [
                "pacs",
                "set",
                "--establishment",
                "HOPB",
                "--dicomweb",
                "http://h/",
                "--ca-file",
                str(ca),
            ]
        )
        == 2
    )
    assert main(["pacs", "set", "--establishment", "HOPB", "--ae-title", "P"]) == 2
    err = capsys.readouterr().err
    for words in ("give --dicomweb alone", "needs --user", "needs a secret", "no credentials",
                  "for an https:// URL", "needs --ae-title, --host and --port"):  # fmt: skip
        assert words in err
