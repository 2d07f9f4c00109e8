"""The SQLAlchemy models and the Alembic migrations describe the same schema.

A database migrated from empty to head is compared with the models by Alembic's
own autogenerate (``compare_metadata``): any operation it would write into a new
revision is a difference between the two. Runs on SQLite and on PostgreSQL (see
docs/deployment.md, "Schema migrations").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Index, Table
from sqlalchemy.engine import Connection
from sqlalchemy.schema import Constraint

from server.core.config import normalise_database_url
from server.core.db import create_engine
from server.core.migrate import alembic_config, upgrade
from server.schema import include_object_for, target_metadata
from tests.conftest import BACKEND, PG_ADMIN, _pg_url

ROOT = Path(__file__).resolve().parents[2]

# Differences that are known and must go, each with the reason it is still here.
# The test fails when one of them disappears, so that the entry goes with it.
#: Differences known and accepted, with why (none today).
PENDING: dict[str, str] = {}

# Runs in a fresh interpreter: what Alembic sees (server.schema alone) against
# every table that any module of the project maps.
_TABLES_SCRIPT = """
import importlib, json, pkgutil
from server.schema import target_metadata
listed = sorted(t for m in target_metadata for t in m.tables)
import dicomweb, server
for package in (server, dicomweb):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.startswith("server.migrations"):  # env.py runs Alembic
            importlib.import_module(module.name)
mapped = sorted(t for m in target_metadata for t in m.tables)
print(json.dumps({"listed": listed, "mapped": mapped}))
"""


def _name(obj: Any) -> str:
    """``table.name`` for the schema item an autogenerate operation carries."""
    if isinstance(obj, Table):
        return obj.name
    if isinstance(obj, Column):
        return f"{obj.table.name}.{obj.name}"
    if isinstance(obj, Index | Constraint) and obj.table is not None:
        return f"{obj.table.name}.{obj.name}"
    return repr(obj)


def describe(diff: Any) -> str:
    """One line per operation, e.g. ``modify_nullable exams.status: True -> False``."""
    if isinstance(diff, list):  # column changes come grouped per column
        return "; ".join(describe(change) for change in diff)
    op = diff[0]
    if op.startswith("modify_"):
        _, _schema, table, column, _info, old, new = diff
        return f"{op} {table}.{column}: {old!r} -> {new!r}"
    if op in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        return f"{op} {table}.{column.name}"
    return f"{op} {_name(diff[1])}"


def _compare(connection: Connection) -> list[str]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": include_object_for(connection.dialect.name),
        },
    )
    # The list env.py gives autogenerate: compare_metadata passes it on to an
    # AutogenContext, which takes a sequence of MetaData; only its annotation
    # says one MetaData.
    diffs = compare_metadata(context, target_metadata)  # type: ignore[arg-type]
    return sorted(describe(diff) for diff in diffs)


async def _differences(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: c.dialect.get_table_names(c))
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def test_models_match_migrations(database_url: str) -> None:
    differences = await _differences(database_url)
    assert differences == sorted(PENDING), "\n".join(differences)


@pytest.fixture
async def empty_database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own, with no table (the shared template must
    not be downgraded under the other tests)."""
    if BACKEND == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"ti_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield normalise_database_url(_pg_url(name))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def test_downgrade_to_base_and_back(empty_database_url: str) -> None:
    """Every revision's downgrade runs and removes what its upgrade made: from
    head down to an empty database, then up again to the same schema."""
    url = empty_database_url
    await asyncio.to_thread(upgrade, url)
    assert "exams" in await _tables(url)
    await asyncio.to_thread(_downgrade, url, "base")
    assert await _tables(url) == set()
    await asyncio.to_thread(upgrade, url)
    differences = await _differences(url)
    assert differences == sorted(PENDING), "\n".join(differences)


@pytest.mark.slow
def test_alembic_sees_every_mapped_table() -> None:
    """A model missing from server/schema.py would be a table autogenerate drops."""
    done = subprocess.run(
        [sys.executable, "-c", _TABLES_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    tables = json.loads(done.stdout)
    assert {"exams", "dicomweb_studies", "call_recordings"} <= set(tables["mapped"])
    missing = sorted(set(tables["mapped"]) - set(tables["listed"]))
    assert not missing, f"server/schema.py does not import the models of {missing}"
    assert tables["listed"] == tables["mapped"]


def test_one_head() -> None:
    """Revisions form one line: a second head means two migrations to merge."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
