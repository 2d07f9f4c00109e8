"""Shared fixtures: a fresh database per test (SQLite or PostgreSQL, chosen by
``TEST_DATABASE``), an isolated Redis key prefix, demo accounts, and the app in
two tiers (docs/architecture.md, "Two tiers of tests"): in process over httpx's
ASGI transport (``api``, ``api_for``), or under uvicorn on a real socket
(``live_server``, ``http``, ``client_for``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from server.accounts.service import add_establishment, add_user
from server.composition import app_context
from server.core.config import Settings, normalise_database_url
from server.core.migrate import upgrade
from server.testing import LiveServer
from server.web.app import App, create_app
from tests.helpers import PASSWORD, flush_prefix, login
from tests.lifespan import running

BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser tests run once, on the embedded SQLite default: they test the pages,
    and the server's SQL they reach is tested on both databases by the API tests
    (`make test` runs the two databases side by side on a 2-core machine)."""
    if BACKEND != "postgresql":
        return
    browser = [item for item in items if item.nodeid.startswith("tests/browser/")]
    if browser:
        config.hook.pytest_deselected(items=browser)
        items[:] = [item for item in items if not item.nodeid.startswith("tests/browser/")]


def _pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database made once per run: a file to copy, or a PostgreSQL database."""
    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)
        return
    name = f"ti_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    upgrade(normalise_database_url(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(migrated_template: str, tmp_path: Path) -> str:
    """An empty, migrated database for this test alone."""
    if BACKEND == "sqlite":
        target = tmp_path / "db.sqlite"
        shutil.copyfile(migrated_template, target)
        return f"sqlite+aiosqlite:///{target}"
    conn = await asyncpg.connect(migrated_template)
    try:
        await conn.execute(await _emptying(conn))
    finally:
        await conn.close()
    return normalise_database_url(migrated_template)


async def _emptying(conn: asyncpg.Connection) -> str:
    """The statements that empty every table of the test database and restart its
    sequences, in one transaction. DELETE with the foreign-key triggers off (replica
    role) rather than TRUNCATE: a test leaves a few rows, and TRUNCATE costs ~85 ms for
    the schema's tables however empty (~13 ms this way), once per test."""
    rows = await conn.fetch(
        "SELECT 'DELETE FROM \"' || tablename || '\"' AS sql FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        " UNION ALL SELECT 'ALTER SEQUENCE \"' || sequence_name || '\" RESTART'"
        " FROM information_schema.sequences WHERE sequence_schema = 'public'"
    )
    body = "; ".join(r["sql"] for r in rows)
    return f"BEGIN; SET LOCAL session_replication_role = replica; {body}; COMMIT"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are removed after."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    flush_prefix(prefix)


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base = Settings(
            database_url=database_url,
            dicom_storage=tmp_path / "dicom",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            log_level="WARNING",
        )
        return base.with_(**overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@dataclass
class Accounts:
    """Two establishments (A and B) and a user per role; every password is PASSWORD."""

    password: str = PASSWORD


@pytest.fixture
async def accounts(settings: Settings) -> Accounts:
    async with app_context(settings) as app, app.db() as db:
        await add_establishment(app, db, "HOPA", "Hôpital A")
        await add_establishment(app, db, "HOPB", "Hôpital B")
        for username, role, est in [
            ("urg_a", "urgentist", "HOPA"),
            ("man_a", "manipulator", "HOPA"),
            ("urg_b", "urgentist", "HOPB"),
            ("man_b", "manipulator", "HOPB"),
            ("rad", "radiologist", None),
            ("rad2", "radiologist", None),
            ("coord", "coordinator", None),
            ("admin", "admin", None),
        ]:
            await add_user(app, db, username, PASSWORD, role, est, username.upper())
        await db.commit()
    return Accounts()


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


#: The test clients drop an idle connection well before the server would (uvicorn closes
#: one idle for 5 s, httpx's default expiry is also 5 s): at the same instant, a request
#: sent on a connection the server is closing fails with a ReadError (seen under load).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)


@pytest.fixture
async def http(live_server: LiveServer, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client of the live server (the accounts exist)."""
    async with httpx.AsyncClient(
        base_url=live_server.url, timeout=10, limits=CLIENT_LIMITS
    ) as client:
        yield client


@pytest.fixture
async def client_for(
    live_server: LiveServer, accounts: Accounts
) -> AsyncIterator[Callable[[str], Awaitable[httpx.AsyncClient]]]:
    """``await client_for("urg_a")``: a client logged in as that user (bearer token)."""
    clients: list[httpx.AsyncClient] = []

    async def make(username: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=live_server.url, timeout=10, limits=CLIENT_LIMITS)
        clients.append(client)
        client.headers["Authorization"] = f"Bearer {await login(client, username)}"
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def asgi_app(settings: Settings) -> AsyncIterator[App]:
    """The app of ``create_app(settings)`` with its lifespan run (started before the
    test, shut down after), called in process: no socket, no uvicorn."""
    app = create_app(settings)
    async with running(app):  # its shutdown waits for its start-up work (tests/web)
        yield app


def _in_process(app: App) -> httpx.AsyncClient:
    # ASGITransport gives every request the client address ("127.0.0.1", 123): the
    # login throttle keys on 127.0.0.1, as it does for clients of the live server.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def api(asgi_app: App, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client of the app in process (the accounts exist)."""
    async with _in_process(asgi_app) as client:
        yield client


@pytest.fixture
async def api_for(
    asgi_app: App, accounts: Accounts
) -> AsyncIterator[Callable[[str], Awaitable[httpx.AsyncClient]]]:
    """``await api_for("urg_a")``: ``client_for``'s in-process twin, logged in as that
    user (bearer token), for tests that only make HTTP requests to the API."""
    clients: list[httpx.AsyncClient] = []

    async def make(username: str) -> httpx.AsyncClient:
        client = _in_process(asgi_app)
        clients.append(client)
        client.headers["Authorization"] = f"Bearer {await login(client, username)}"
        return client

    yield make
    for client in clients:
        await client.aclose()
