"""What only the Redis engine promises: multiplexing, reconnection, self-cleaning keys."""

import asyncio
import time

import redis.asyncio

from rooms.engine import MemoryEngine, Message, create_engine
from rooms.engine.redis import RedisEngine

Pair = tuple[RedisEngine, RedisEngine]


async def pubsub_connections(client: redis.asyncio.Redis, name: str) -> list[dict[str, str]]:
    """The connections named `name` that are subscribed to something."""
    clients = await client.client_list()
    return [c for c in clients if c["name"] == name and int(c["sub"]) > 0]


async def test_one_pubsub_connection_per_process_one_redis_subscription_per_channel(
    redis_engines: Pair, redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    a, _ = redis_engines
    subscriptions = [await a.subscribe(f"exam:{n % 10}", lambda m: None) for n in range(100)]
    channels = [f"{prefix}channel:exam:{n}" for n in range(10)]
    assert dict(await redis_client.pubsub_numsub(*channels)) == dict.fromkeys(channels, 1)
    [connection] = await pubsub_connections(redis_client, f"{prefix}a")
    assert connection["sub"] == "10"

    # The last local subscriber of a channel unsubscribes it in Redis.
    for subscription in subscriptions:
        if subscription.channel == "exam:0":
            await subscription.close()
    # UNSUBSCRIBE is sent before close() returns; give Redis time to process it.
    for _ in range(400):
        if (await redis_client.pubsub_numsub(channels[0]))[0][1] == 0:
            break
        await asyncio.sleep(0.005)
    numsub = dict(await redis_client.pubsub_numsub(*channels))
    assert numsub == {channels[0]: 0} | dict.fromkeys(channels[1:], 1)


async def test_the_pubsub_reconnects_and_resubscribes_when_its_connection_drops(
    redis_engines: Pair, redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    a, b = redis_engines
    got: list[Message] = []
    await a.subscribe("exam:1", got.append)
    [connection] = await pubsub_connections(redis_client, f"{prefix}a")
    await redis_client.client_kill_filter(_id=connection["id"])
    # Messages published while the connection is down are lost (at most once);
    # keep publishing until the resubscribed connection receives one.
    deadline = time.monotonic() + 5
    while not got:
        assert time.monotonic() < deadline, "the pub/sub did not come back"
        await b.publish("exam:1", {"n": 1})
        await asyncio.sleep(0.02)
    [reconnected] = await pubsub_connections(redis_client, f"{prefix}a")
    assert reconnected["id"] != connection["id"]


async def test_presence_keys_expire_with_their_last_member(
    redis_engines: Pair, redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    a, _ = redis_engines
    await a.presence_join("exam:1", "c1", {"user": "u"}, ttl_s=30)
    await a.presence_join("exam:1", "c2", {"user": "u"}, ttl_s=5)
    keys = sorted([k async for k in redis_client.scan_iter(match=prefix + "*")])
    assert keys == [f"{prefix}presence:{{exam:1}}:expiry", f"{prefix}presence:{{exam:1}}:members"]
    for key in keys:
        # The longest ttl wins, plus a second of grace: a dead room cleans itself.
        assert 30_000 < await redis_client.pttl(key) <= 31_000


async def test_timers_and_counters_live_under_the_prefix(
    redis_engines: Pair, redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    a, _ = redis_engines
    await a.timer_schedule("e1:accept:1", 10.0, {})
    await a.hit("login:u", 60)
    keys = sorted([k async for k in redis_client.scan_iter(match=prefix + "*")])
    assert keys == [
        f"{prefix}hits:login:u",
        f"{prefix}{{timers}}:due",
        f"{prefix}{{timers}}:payload",
    ]
    assert 59_000 < await redis_client.pttl(f"{prefix}hits:login:u") <= 60_000


async def test_create_engine_picks_redis_only_when_configured(prefix: str, redis_url: str) -> None:
    assert isinstance(create_engine(None, prefix), MemoryEngine)
    assert isinstance(create_engine("", prefix), MemoryEngine)
    engine = create_engine(redis_url, prefix)
    assert isinstance(engine, RedisEngine) and engine.prefix == prefix
    await engine.start()
    await engine.close()
