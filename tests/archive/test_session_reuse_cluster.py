"""The archive's remembered sessions follow the announcements of other processes
(server/core/access.py, docs/security.md): two ``teleimagerie serve`` processes
share Redis and the database, and remember a session for a minute, so that only
the announcement can end it in time."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.core.test_access import WITHIN
from tests.live.test_room_cluster import cluster, token  # noqa: F401
from tests.processes import Process

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def long_session_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read by the cluster's processes (they inherit the environment)."""
    monkeypatch.setenv("SESSION_CACHE_S", "60")


async def test_logout_on_one_process_ends_archive_access_on_the_other(
    cluster: list[Process],  # noqa: F811
) -> None:
    a, b = cluster
    headers = {"Authorization": f"Bearer {await token(a.url, 'rad')}"}
    async with httpx.AsyncClient(base_url=b.url) as on_b:
        assert (await on_b.get("/dicomweb/studies", headers=headers)).status_code == 200
        async with httpx.AsyncClient(base_url=a.url) as on_a:
            assert (await on_a.delete("/api/session", headers=headers)).status_code == 204
        # The announcement crosses Redis: B drops the session as it arrives.
        deadline = time.monotonic() + 5 * WITHIN
        status = 200
        while status == 200 and time.monotonic() < deadline:
            status = (await on_b.get("/dicomweb/studies", headers=headers)).status_code
            await asyncio.sleep(0.05)
        assert status == 401
