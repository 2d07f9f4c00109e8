"""``teleimagerie hl7 add-destination`` and ``hl7 list-destinations`` (docs/hl7.md
"Destinations"): what they register, and what they refuse without writing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from server.cli import main
from server.composition import core_context
from server.core.config import Settings
from server.core.models import Hl7Destination


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    return settings


def destinations(settings: Settings) -> list[Hl7Destination]:
    async def fetch() -> list[Hl7Destination]:
        async with core_context(settings) as app, app.read() as db:
            return list((await db.scalars(select(Hl7Destination))).all())

    return asyncio.run(fetch())


ADD = ["hl7", "add-destination", "--establishment", "nantes", "--name", "DPI"]


def test_add_and_list(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["establishment", "add", "NANTES", "CHU de Nantes"]) == 0
    argv = [*ADD, "--host", "dpi.chu.fr", "--port", "2575", "--kinds", "oru", "--tls"]
    assert main(argv) == 0
    (dest,) = destinations(env)
    assert (dest.host, dest.port, dest.kinds, dest.tls) == ("dpi.chu.fr", 2575, "oru", True)
    assert (dest.receiving_application, dest.receiving_facility) == ("DPI", "NANTES")
    capsys.readouterr()
    assert main(["hl7", "list-destinations"]) == 0
    listed = capsys.readouterr().out
    assert "NANTES" in listed and "dpi.chu.fr:2575" in listed and "tls" in listed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--host", "h", "--port", "2575", "--kinds", "fax"], "kinds are oru, mdm or both"),
        (["--host", "h", "--port", "0"], "the port is 1 to 65535"),
        (["--host", "h", "--port", "2575", "--tls-cert", "c.pem"], "needs its key"),
    ],
)
def test_refusals_write_nothing(
    env: Settings, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    main(["establishment", "add", "NANTES", "CHU de Nantes"])
    assert main([*ADD, *extra]) == 2
    assert message in capsys.readouterr().err
    assert destinations(env) == []


def test_unknown_establishment_and_duplicate(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["establishment", "add", "NANTES", "CHU de Nantes"])
    argv = ["--host", "h", "--port", "2575"]
    assert main(["hl7", "add-destination", "--establishment", "NOPE", "--name", "X", *argv]) == 2
    assert "no establishment" in capsys.readouterr().err
    assert main([*ADD, *argv]) == 0
    assert main([*ADD, *argv]) == 2
    assert "already has a destination" in capsys.readouterr().err
    assert len(destinations(env)) == 1
