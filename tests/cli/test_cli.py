"""The ``teleimagerie`` command (docs/api.md "Command line")."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest
from sqlalchemy import select

from server.cli import main
from server.composition import app_context
from server.core.config import Settings
from server.core.models import Establishment, User


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    for name, value in (
        ("ARGON2_TIME_COST", "1"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_PARALLELISM", "1"),
    ):
        monkeypatch.setenv(name, value)
    return settings


def _users(settings: Settings) -> dict[str, User]:
    async def fetch() -> dict[str, User]:
        async with app_context(settings) as app, app.db() as db:
            return {u.username: u for u in await db.scalars(select(User))}

    return asyncio.run(fetch())


def test_establishment_and_user_add(
    env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert main(["establishment", "add", "nantes", "CHU de Nantes"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough secret\n"))
    assert (
        main(
            [
                "user",
                "add",
                "dr.who",
                "--role",
                "urgentist",
                "--establishment",
                "NANTES",
                "--professional-id",
                "10000000001",
            ]
        )
        == 0
    )
    user = _users(env)["dr.who"]
    assert user.password_hash.startswith("$argon2id$")
    assert user.professional_id == "10000000001"
    assert "user dr.who (urgentist) added" in capsys.readouterr().out

    async def codes() -> list[str]:
        async with app_context(env) as app, app.db() as db:
            return list(await db.scalars(select(Establishment.code)))

    assert asyncio.run(codes()) == ["NANTES"]


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["user", "add", "x", "--role", "urgentist"], "a long enough secret\n", "--establishment"),
        (
            ["user", "add", "x", "--role", "radiologist", "--establishment", "NANTES"],
            "a long enough secret\n",
            "on-call centre",
        ),
        (["user", "add", "x", "--role", "surgeon"], "a long enough secret\n", "unknown role"),
        (["user", "add", "x", "--role", "coordinator"], "short\n", "12 characters"),
        (
            ["user", "add", "x", "--role", "urgentist", "--establishment", "NOPE"],
            "a long enough secret\n",
            "no establishment NOPE",
        ),
    ],
)
def test_user_add_refusals(
    env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    main(["establishment", "add", "NANTES", "CHU de Nantes"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert "x" not in _users(env)


def test_demo_is_idempotent_and_prints_logins(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "urgentiste" in out and "demo-urgentiste-2026" in out
    users = _users(env)
    assert {u.role for u in users.values()} == {
        "urgentist",
        "manipulator",
        "radiologist",
        "coordinator",
        "admin",
    }
    # Ten people, and the inactive interface account of each site's HL7 sender.
    assert len([u for u in users.values() if u.active]) == 10
    assert sorted(u.display_name for u in users.values() if not u.active) == [
        "DPI (CHATEAUBRIANT)",
        "DPI (CHOLET)",
        "DPI (SAUMUR)",
    ]


def test_migrations_have_one_head() -> None:
    from alembic.script import ScriptDirectory

    from server.core.migrate import alembic_config

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, heads  # one head: every branch merged


def test_establishment_record_with_report(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.core.audit import AuditEntry

    main(["establishment", "add", "NANTES", "CHU de Nantes"])
    assert main(["establishment", "record-with-report", "nantes", "on"]) == 0

    async def fetch() -> tuple[dict, list[dict]]:
        async with app_context(env) as app, app.db() as db:
            est = await db.scalar(select(Establishment).where(Establishment.code == "NANTES"))
            assert est is not None
            rows = await db.scalars(
                select(AuditEntry).where(AuditEntry.action == "establishment.settings")
            )
            return est.settings, [r.detail for r in rows]

    settings, audited = asyncio.run(fetch())
    assert settings["record_with_report"] is True
    assert audited == [{"establishment": "NANTES", "record_with_report": True}]
    assert main(["establishment", "record-with-report", "NANTES", "off"]) == 0
    assert asyncio.run(fetch())[0]["record_with_report"] is False
    assert main(["establishment", "record-with-report", "NOPE", "on"]) == 2
    assert "no establishment NOPE" in capsys.readouterr().err
