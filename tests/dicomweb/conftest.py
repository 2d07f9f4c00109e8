"""Fixtures of the archive's tests: a live archive over a fresh database.

The database comes from the root conftest's ``database_url`` (a migrated SQLite
file or PostgreSQL database per test). While the root conftest cannot be imported
(the server is mid-way), run with ``--confcutdir=tests/dicomweb`` and the fallback
below builds the tables with ``metadata.create_all`` instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from dicomweb import DicomwebConfig, create_dicomweb_app
from dicomweb.testing import LiveServer, RecordingHooks, TokenAccess, create_engine, mounted
from server.web.httpserver import LeanHttpProtocol

try:  # the root conftest provides database_url when it imports
    import tests.conftest  # noqa: F401

    ROOT_FIXTURES = True
except ImportError:
    ROOT_FIXTURES = False

if not ROOT_FIXTURES:
    import asyncpg

    from dicomweb.tables import metadata

    BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
    PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

    @pytest.fixture(scope="session")
    def _pg_database() -> Iterator[str]:
        name = f"dw_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        base = PG_ADMIN.rpartition("/")[0]

        async def admin(sql: str) -> None:
            conn = await asyncpg.connect(PG_ADMIN)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        asyncio.run(
            _create_all(f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1))
        )
        yield f"{base}/{name}"
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _create_all(url: str) -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await engine.dispose()

    async def _truncate(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "TRUNCATE dicomweb_instances, dicomweb_series, dicomweb_studies"
                " RESTART IDENTITY CASCADE"
            )
        finally:
            await conn.close()

    @pytest.fixture
    def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        if BACKEND == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
            asyncio.run(_create_all(url))
            return url
        pg: str = request.getfixturevalue("_pg_database")
        asyncio.run(_truncate(pg))
        return pg.replace("postgresql://", "postgresql+asyncpg://", 1)


@dataclass
class Archive:
    """A running archive: ``url`` ends with ``/dicomweb`` like the server's."""

    url: str
    root: str
    storage: Path
    access: TokenAccess
    hooks: RecordingHooks
    server: LiveServer
    db: async_sessionmaker  # type: ignore[type-arg]


def start_archive(database_url: str, tmp_path: Path, **config: object) -> tuple[Archive, object]:
    engine = create_engine(database_url)
    db = async_sessionmaker(engine, expire_on_commit=False)
    access = TokenAccess()
    hooks = RecordingHooks()
    storage = tmp_path / "dicom"
    cfg = DicomwebConfig(
        storage_root=storage, allowed_origins=("https://viewer.example",), **config
    )  # type: ignore[arg-type]
    app = mounted(create_dicomweb_app(cfg, db, access, hooks))
    # Served as ``teleimagerie serve`` serves it (server/web/httpserver.py).
    server = LiveServer(app, http=LeanHttpProtocol).__enter__()
    archive = Archive(f"{server.url}/dicomweb", server.url, storage, access, hooks, server, db)
    return archive, engine


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    archive, engine = start_archive(database_url, tmp_path)
    try:
        yield archive
    finally:
        archive.server.call(engine.dispose())  # type: ignore[attr-defined]
        archive.server.__exit__()


@pytest.fixture
async def http(archive: Archive) -> AsyncIterator[object]:
    import httpx

    async with httpx.AsyncClient(base_url=archive.url, timeout=30) as client:
        yield client
