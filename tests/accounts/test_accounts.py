"""Accounts (docs/design.md "Accounts"): password change and reset, deactivation,
"log out everywhere", from the API and the CLI, audited; login throttling per user
and address; passwords verified off the event loop."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Awaitable, Callable

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from rooms.engine import MemoryEngine
from server.accounts import auth
from server.accounts.service import add_user
from server.cli import main
from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.core.errors import ApiError
from server.testing import LiveServer
from tests.helpers import PASSWORD, login

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
NEW = "a brand new passphrase"


async def audit_actions(settings: Settings) -> list[tuple[str, str | None, str]]:
    async with app_context(settings) as app, app.db() as db:
        rows = await db.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(r.action, r.username, r.outcome) for r in rows if r.action.startswith("account.")]


async def test_changing_ones_password_asks_the_current_one_and_ends_the_other_sessions(
    api_for: ClientFor, api: httpx.AsyncClient, settings: Settings
) -> None:
    here, elsewhere = await api_for("rad"), await api_for("rad")
    wrong = await here.post("/api/me/password", json={"current": "nope" * 4, "new": NEW})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    short = await here.post("/api/me/password", json={"current": PASSWORD, "new": "short"})
    assert short.status_code == 422 and short.json()["error"]["code"] == "invalid_account"
    resp = await here.post("/api/me/password", json={"current": PASSWORD, "new": NEW})
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 1}
    assert (await here.get("/api/me")).status_code == 200
    assert (await elsewhere.get("/api/me")).status_code == 401
    old = await api.post("/api/session", json={"username": "rad", "password": PASSWORD})
    assert old.status_code == 401
    assert await login(api, "rad", NEW)
    assert await audit_actions(settings) == [
        ("account.password", "rad", "failed"),
        ("account.password", "rad", "ok"),
    ]


async def test_log_out_everywhere_ends_every_session(
    api_for: ClientFor, settings: Settings
) -> None:
    one, two, other = await api_for("coord"), await api_for("coord"), await api_for("rad")
    assert (await one.delete("/api/me/sessions")).status_code == 204
    assert (await one.get("/api/me")).status_code == 401
    assert (await two.get("/api/me")).status_code == 401
    assert (await other.get("/api/me")).status_code == 200
    assert await audit_actions(settings) == [("account.logout_all", "coord", "ok")]


async def test_an_admin_resets_a_password_and_only_an_admin_may(
    api_for: ClientFor, api: httpx.AsyncClient, settings: Settings
) -> None:
    admin, urg, coord = (
        await api_for("admin"),
        await api_for("urg_a"),
        await api_for("coord"),
    )
    refused = await coord.post("/api/users/urg_a/password", json={"new": NEW})
    assert refused.status_code == 403
    assert (await admin.post("/api/users/ghost/password", json={"new": NEW})).status_code == 404
    own = await admin.post("/api/users/admin/deactivate")
    assert own.status_code == 409 and own.json()["error"]["code"] == "own_account"
    resp = await admin.post("/api/users/urg_a/password", json={"new": NEW})
    assert resp.status_code == 200 and resp.json()["sessions_ended"] == 1
    assert (await urg.get("/api/me")).status_code == 401
    assert await login(api, "urg_a", NEW)
    assert await audit_actions(settings) == [("account.password_reset", "admin", "ok")]


def test_the_cli_sets_passwords_deactivates_and_logs_out_everywhere(
    settings: Settings, accounts: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    for name in ("ARGON2_TIME_COST", "ARGON2_PARALLELISM"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "1024")

    async def session_of(username: str, password: str = PASSWORD) -> str:
        async with app_context(settings) as app, app.db() as db:
            token, _ = await auth.login(app, db, username, password, "10.0.0.1")
            await db.commit()
            return token

    async def live(token: str) -> bool:
        async with app_context(settings) as app, app.read() as db:
            return await auth.resolve(app, db, token) is not None

    token = asyncio.run(session_of("man_a"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(NEW + "\n"))
    assert main(["user", "passwd", "man_a"]) == 0
    assert not asyncio.run(live(token))
    token = asyncio.run(session_of("man_a", NEW))
    assert main(["user", "logout-all", "man_a"]) == 0
    assert not asyncio.run(live(token))
    token = asyncio.run(session_of("man_a", NEW))
    assert main(["user", "deactivate", "man_a"]) == 0
    assert not asyncio.run(live(token))
    with pytest.raises(ApiError):
        asyncio.run(session_of("man_a", NEW))
    assert main(["user", "activate", "man_a"]) == 0
    assert asyncio.run(live(asyncio.run(session_of("man_a", NEW))))
    assert main(["user", "deactivate", "nobody"]) == 2
    assert [a for a, _, _ in asyncio.run(audit_actions(settings))] == [
        "account.password_reset",
        "account.logout_all",
        "account.deactivate",
        "account.activate",
    ]


# -- throttling ------------------------------------------------------------------


async def test_an_attacker_elsewhere_does_not_lock_the_owner_out(
    live_server: LiveServer, accounts: object
) -> None:
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    owner = {"X-Forwarded-For": "198.51.100.7"}
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        statuses = []
        for _ in range(20):
            resp = await http.post(
                "/api/session", json={"username": "rad", "password": "nope" * 4}, headers=attacker
            )
            statuses.append(resp.status_code)
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429
        right = await http.post(
            "/api/session", json={"username": "rad", "password": PASSWORD}, headers=attacker
        )
        assert right.status_code == 429  # the attacker's address waits, right password or not
        resp = await http.post(
            "/api/session", json={"username": "rad", "password": PASSWORD}, headers=owner
        )
        assert resp.status_code == 200


async def test_the_same_address_waits_longer_after_each_failure(settings: Settings) -> None:
    clock = [1_000_000.0]
    retry_after: list[int] = []
    async with app_context(settings.with_(login_free_failures=2)) as app:
        app.bus = MemoryEngine(clock=lambda: clock[0])
        async with app.db() as db:
            await add_user(app, db, "dr.night", PASSWORD, "radiologist")
            await db.commit()

        async def attempt(password: str, addr: str = "203.0.113.9") -> int:
            async with app.db() as db:
                try:
                    await auth.login(app, db, "dr.night", password, addr)
                except ApiError as exc:
                    if exc.status == 429:
                        assert exc.headers is not None
                        retry_after.append(int(exc.headers["Retry-After"]))
                    return exc.status
                await db.commit()
                return 200

        assert [await attempt("wrong" * 4) for _ in range(3)] == [401, 401, 401]
        for _ in range(4):
            assert await attempt("wrong" * 4) == 429
            assert await attempt(PASSWORD) == 429  # the right one waits as well, from here
            clock[0] += retry_after[-1]
            assert await attempt("wrong" * 4) == 401
        assert retry_after == [1, 1, 2, 2, 4, 4, 8, 8]
        assert await attempt(PASSWORD, addr="198.51.100.7") == 200  # the owner, elsewhere


async def test_an_address_spraying_many_usernames_is_stopped(settings: Settings) -> None:
    async with app_context(settings.with_(login_max_failures_addr=5)) as app:
        statuses = []
        for n in range(7):
            async with app.db() as db:
                try:
                    await auth.login(app, db, f"user{n}", "wrong" * 4, "203.0.113.10")
                except ApiError as exc:
                    statuses.append(exc.status)
        assert statuses == [401] * 5 + [429] * 2


# -- off the event loop -------------------------------------------------------------


class ThreadNoting(PasswordHasher):
    """A real argon2 hasher that notes on which thread it hashes and verifies."""

    threads: list[int]

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.threads.append(threading.get_ident())
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.get_ident())
        return super().hash(password, salt=salt)


async def test_passwords_are_hashed_and_verified_off_the_event_loop(
    settings: Settings, accounts: object
) -> None:
    async with app_context(settings) as app:
        # Stronger than the stored hashes (t=1): the successful login rehashes.
        noting = ThreadNoting(time_cost=2, memory_cost=1024, parallelism=1)
        noting.threads = []
        app.passwords._ph = noting
        async with app.db() as db:
            with pytest.raises(ApiError):
                await auth.login(app, db, "coord", "wrong" * 4, "10.0.0.2")
        async with app.db() as db:
            await auth.login(app, db, "coord", PASSWORD, "10.0.0.2")
        assert len(noting.threads) == 3  # two verifications, one rehash
        assert threading.get_ident() not in noting.threads
