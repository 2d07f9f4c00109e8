"""The archive reuses a session checked a moment ago (``SESSION_CACHE_S``,
server/core/access.py ``SessionWatch.recall``), and an ended session still stops
working at once: logout, deactivation, "log out everywhere" (docs/security.md).

The cache is set to a minute here, so that each answer depends on the
announcement dropping the entry, not on the entry having expired."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import update

from dicomweb.samples import ct_series
from server.composition import app_context
from server.core.config import Settings
from server.core.models import UserSession
from server.testing import LiveServer
from tests.archive.test_archive import exam_in_acquisition, stow
from tests.helpers import login, of_exam

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
FRAMES = {"accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(session_cache_s=60.0)


async def frame_urls(client_for: ClientFor) -> list[str]:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    resp = await stow(man, list(ct_series(3, size=32, **of_exam(exam))))
    assert resp.status_code == 200, resp.text
    return [i["00081190"]["Value"][0] + "/frames/1" for i in resp.json()["00081199"]["Value"]]


async def test_logout_ends_archive_access_at_once(client_for: ClientFor) -> None:
    urls = await frame_urls(client_for)
    rad = await client_for("rad")
    for url in urls:  # the session is now remembered, and so is the study
        assert (await rad.get(url, headers=FRAMES)).status_code == 200
    assert (await rad.delete("/api/session")).status_code == 204
    for url in urls:
        assert (await rad.get(url, headers=FRAMES)).status_code == 401
    assert (await rad.get("/dicomweb/studies")).status_code == 401


async def test_deactivation_and_log_out_everywhere_end_archive_access_at_once(
    client_for: ClientFor,
) -> None:
    urls = await frame_urls(client_for)
    rad, other_rad, admin = [await client_for(u) for u in ("rad", "rad", "admin")]
    for client in (rad, other_rad):
        assert (await client.get(urls[0], headers=FRAMES)).status_code == 200
    resp = await admin.post("/api/users/rad/deactivate")
    assert resp.status_code == 200 and resp.json()["sessions_ended"] == 3  # and frame_urls'
    for client in (rad, other_rad):
        assert (await client.get(urls[0], headers=FRAMES)).status_code == 401
    assert (await admin.post("/api/users/rad/activate")).status_code == 200
    one, two, coord = [await client_for(u) for u in ("rad", "rad", "coord")]
    for client in (one, two, coord):
        assert (await client.get("/dicomweb/studies")).status_code == 200
    assert (await one.delete("/api/me/sessions")).status_code == 204
    assert (await one.get("/dicomweb/studies")).status_code == 401
    assert (await two.get("/dicomweb/studies")).status_code == 401
    assert (await coord.get("/dicomweb/studies")).status_code == 200  # someone else's


async def test_the_rest_of_the_api_sees_an_unannounced_revocation_at_once(
    client_for: ClientFor, settings: Settings
) -> None:
    rad = await client_for("rad")
    assert (await rad.get("/dicomweb/studies")).status_code == 200
    await revoke_in_sql(settings)
    # The archive may answer from its cache for up to SESSION_CACHE_S; the rest
    # of the API asks SQL on every request.
    assert (await rad.get("/api/me")).status_code == 401


async def test_an_unannounced_revocation_is_seen_once_the_entry_expires(
    settings: Settings, accounts: object
) -> None:
    with LiveServer(settings.with_(session_cache_s=0.3)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            http.headers["Authorization"] = f"Bearer {await login(http, 'rad')}"
            http.cookies.clear()
            assert (await http.get("/dicomweb/studies")).status_code == 200
            await revoke_in_sql(settings)
            await asyncio.sleep(0.6)  # twice the cache time: SQL is asked again
            assert (await http.get("/dicomweb/studies")).status_code == 401


async def revoke_in_sql(settings: Settings) -> None:
    """Every session revoked straight in SQL, as a script or the CLI without
    Redis would: the server is not told."""
    async with app_context(settings) as app, app.db() as db:
        await db.execute(update(UserSession).values(revoked_at=datetime.now(UTC)))
        await db.commit()
