"""Logins, sessions, cookies, throttling (docs/design.md "Sessions")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from server.composition import app_context
from server.core.config import Settings
from server.core.models import User, UserSession
from server.testing import LiveServer
from server.web.app import create_app
from tests.helpers import PASSWORD, login
from tests.lifespan import running


async def test_login_sets_httponly_strict_cookie_and_returns_token(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/session", json={"username": "urg_a", "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.json()
    assert body["user"]["role"] == "urgentist"
    assert body["user"]["establishment"]["code"] == "HOPA"
    cookie = resp.headers["set-cookie"]
    assert "ti_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    # The cookie alone authenticates the browser.
    me = await http.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "urg_a"


async def test_bearer_token_authenticates_and_logout_revokes(http: httpx.AsyncClient) -> None:
    token = await login(http, "rad")
    http.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/api/me", headers=headers)).json()["role"] == "radiologist"
    assert (await http.delete("/api/session", headers=headers)).status_code == 204
    resp = await http.get("/api/me", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "session_expired"


async def test_no_credentials_is_401_with_error_shape(http: httpx.AsyncClient) -> None:
    resp = await http.get("/api/me")
    assert resp.status_code == 401
    assert resp.json() == {"error": {"code": "not_authenticated", "message": "log in first"}}
    resp = await http.get("/api/me", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401


async def test_tokens_are_stored_hashed_and_passwords_as_argon2id(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    token = await login(http, "urg_a")
    async with app_context(settings) as app, app.db() as db:
        hashes = list(await db.scalars(select(UserSession.token_hash)))
        user = await db.scalar(select(User).where(User.username == "urg_a"))
    assert token not in hashes and len(hashes) == 1 and len(hashes[0]) == 64
    assert user is not None and user.password_hash.startswith("$argon2id$")


async def test_wrong_password_and_unknown_user_look_the_same(http: httpx.AsyncClient) -> None:
    wrong = await http.post("/api/session", json={"username": "urg_a", "password": "x" * 20})
    unknown = await http.post("/api/session", json={"username": "ghost", "password": "x" * 20})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_failures_from_one_address_make_it_wait_not_the_others(
    http: httpx.AsyncClient,
) -> None:
    """Throttling is per (username, address): tests/accounts/test_accounts.py has the rest."""
    statuses = []
    for _ in range(20):
        resp = await http.post("/api/session", json={"username": "man_a", "password": "nope" * 4})
        statuses.append(resp.status_code)
    assert statuses[0] == 401
    assert statuses[-1] == 429
    assert resp.json()["error"]["code"] == "too_many_attempts"
    assert int(resp.headers["retry-after"]) > 0
    # Another user from the same address is not locked out by that user's failures.
    assert (
        await http.post("/api/session", json={"username": "urg_a", "password": PASSWORD})
    ).status_code == 200


async def test_throttle_lives_in_redis_when_configured(
    make_settings: Callable[..., Settings], accounts: object, redis_prefix: str
) -> None:
    settings = make_settings(
        redis_url="redis://127.0.0.1:6379/0", redis_prefix=redis_prefix, login_backoff_base_s=60
    )
    for _ in range(2):  # two processes' worth of servers share the counters
        with LiveServer(settings) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                for _ in range(5):
                    await client.post(
                        "/api/session", json={"username": "coord", "password": "bad" * 5}
                    )
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            resp = await client.post(
                "/api/session", json={"username": "coord", "password": PASSWORD}
            )
    assert resp.status_code == 429


async def test_idle_and_absolute_expiry(http: httpx.AsyncClient, settings: Settings) -> None:
    token = await login(http, "urg_a")
    http.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    async with app_context(settings) as app, app.db() as db:
        past = datetime.now(UTC) - timedelta(seconds=settings.session_idle_s + 5)
        await db.execute(update(UserSession).values(last_seen_at=past))
        await db.commit()
    assert (await http.get("/api/me", headers=headers)).status_code == 401

    token = await login(http, "urg_a")
    http.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    async with app_context(settings) as app, app.db() as db:
        await db.execute(update(UserSession).values(expires_at=datetime.now(UTC)))
        await db.commit()
    assert (await http.get("/api/me", headers=headers)).status_code == 401


async def test_login_rehashes_when_parameters_change(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    stronger = make_settings(argon2_time_cost=2)
    with LiveServer(stronger) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            await login(client, "urg_b")
    async with app_context(stronger) as app, app.db() as db:
        user = await db.scalar(select(User).where(User.username == "urg_b"))
        other = await db.scalar(select(User).where(User.username == "man_b"))
    assert user is not None and other is not None
    assert ",t=2," in user.password_hash
    assert ",t=1," in other.password_hash


async def test_login_body_is_validated(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/session", json={"username": "urg_a"})
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == [{"field": "password", "message": "Field required"}]
    resp = await http.post(
        "/api/session", content=b"{", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_json"


async def test_ohif_url_given_to_the_browser_only_when_configured(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    """The viewer's "open in OHIF" reads ``ohif_url`` from the login and ``/api/me``
    (docs/configuration.md "OHIF_URL"): absent unless configured."""
    for ohif in (None, "https://pacs.example/ohif"):
        app = create_app(make_settings(ohif_url=ohif))
        async with running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                resp = await client.post(
                    "/api/session", json={"username": "rad", "password": PASSWORD}
                )
                assert resp.status_code == 200, resp.text
                user = resp.json()["user"]
                me = (
                    await client.get(
                        "/api/me", headers={"Authorization": f"Bearer {resp.json()['token']}"}
                    )
                ).json()
        assert user.get("ohif_url") == ohif and me.get("ohif_url") == ohif
        assert ("ohif_url" in me) == (ohif is not None)
