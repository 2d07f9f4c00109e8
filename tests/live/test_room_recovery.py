"""The room after a failure (docs/rooms.md "Presence", "Reconnecting"): members of a
killed process leave presence in under 30 s; a client ahead of a restored
database is told to reset and gets the whole log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import redis.asyncio

from rooms.engine.redis import RedisEngine
from server.core.config import Settings
from server.live.roomhub import RoomHub, presence_lag_s
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import REDIS_URL
from tests.live.test_room import new_exam, token_of

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


async def test_a_client_ahead_of_the_log_is_told_to_reset_and_gets_it_all(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg)) as room:
        await room.chat("avant la restauration")
    # A client that saw seq 40 before the database was restored from a backup.
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=40) as room:
        assert room.welcome["reset"] is True and room.welcome["last_seq"] == 2
        assert [(await room.next_event())["seq"] for _ in range(2)] == [1, 2]
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=2) as room:
        assert "reset" not in room.welcome  # caught up: nothing to replay, no reset


def test_a_killed_process_members_leave_presence_within_30_s() -> None:
    settings = Settings()
    hub = RoomHub(None, settings.presence_ttl_s, settings.presence_interval_s)  # type: ignore[arg-type]
    assert (hub.ttl_s, hub.interval_s) == (15, 5)
    assert presence_lag_s(hub.ttl_s, hub.interval_s) == 20 < 30
    # Two missed heartbeats still leave a live member in.
    assert hub.interval_s * 2 < hub.ttl_s


async def test_redis_forgets_a_member_that_stops_heartbeating_after_the_ttl(
    redis_prefix: str,
) -> None:
    ttl = Settings().presence_ttl_s
    engine = RedisEngine(REDIS_URL, redis_prefix)
    await engine.start()
    try:
        t0 = 1_000_000.0
        await engine.presence_join("exam:x", "c1", {"user": {"id": 1}}, ttl, now=t0)
        assert [m["conn_id"] for m in await engine.presence_list("exam:x", now=t0 + ttl - 0.1)]
        assert await engine.presence_list("exam:x", now=t0 + ttl) == []
        # The keys themselves expire too, a second after the ttl at most.
        await engine.presence_join("exam:y", "c2", {"user": {"id": 2}}, ttl)
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=redis_prefix + "presence:{exam:y}*")]
            assert len(keys) == 2
            for key in keys:
                assert 0 < await client.pttl(key) <= (ttl + 1) * 1000
        finally:
            await client.aclose()
    finally:
        await engine.close()
