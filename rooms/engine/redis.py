"""The engine for many processes, on Redis (redis.asyncio).

Fan-out is multiplexed: a process holds ONE pub/sub connection whatever its number of
WebSockets, subscribes a Redis channel when its first local subscriber arrives and
unsubscribes when the last one leaves; a listener task decodes each message once and
hands it to the local callbacks. redis-py re-subscribes on reconnect; the listener
backs off while Redis is away.

Multi-key operations that must not interleave between processes are Lua scripts,
which Redis runs atomically (https://redis.io/docs/latest/develop/interactive/
programmability/eval-intro/). Keys of one room or of the timers share a hash tag so
that they stay on one slot under Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rooms.engine.base import Callback, Engine, Message, Subscription, deliver, encoded

logger = logging.getLogger("rooms.engine.redis")

# KEYS: expiry zset, members hash. ARGV: conn_id, expires_at, ttl_s, member JSON.
_JOIN = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
local ms = math.ceil(tonumber(ARGV[3]) * 1000) + 1000
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
"""

# KEYS: expiry zset, members hash. ARGV: conn_id, expires_at, ttl_s, now.
_HEARTBEAT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ms = math.ceil(tonumber(ARGV[3]) * 1000) + 1000
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end
end
return 1
"""

# KEYS: expiry zset, members hash. ARGV: now. Returns conn_id, member JSON, ...
_LIST = """
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], c)
  redis.call('HDEL', KEYS[2], c)
end
local out = {}
for _, c in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = c
  out[#out + 1] = redis.call('HGET', KEYS[2], c)
end
return out
"""

# KEYS: due zset, payload hash. ARGV: now, limit. Returns key, payload JSON, ...
_CLAIM = """
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('HGET', KEYS[2], k)
  redis.call('ZREM', KEYS[1], k)
  redis.call('HDEL', KEYS[2], k)
end
return out
"""

# KEYS: the lease. ARGV: owner, ttl in ms. Returns the owner after the call.
_LEASE = """
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return current
"""

# KEYS: the lease. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


def _pairs(flat: list[str]) -> list[tuple[str, Message]]:
    return [(flat[i], json.loads(flat[i + 1])) for i in range(0, len(flat), 2)]


def _members(flat: list[str]) -> list[Message]:
    return sorted(
        ({**member, "conn_id": conn_id} for conn_id, member in _pairs(flat)),
        key=lambda entry: entry["conn_id"],
    )


class RedisSubscription(Subscription):
    # One per room socket of this process, for the socket's whole life.
    __slots__ = ("channel", "name", "callback", "_engine")

    def __init__(self, engine: RedisEngine, channel: str, name: str, callback: Callback) -> None:
        self.channel = channel
        self.name = name  # the Redis channel, with the engine's prefix
        self.callback = callback
        self._engine = engine

    async def close(self) -> None:
        await self._engine._unsubscribe(self)


@dataclass(slots=True)
class _Channel:
    """The local subscribers of one Redis channel, and its SUBSCRIBE confirmation."""

    ready: asyncio.Future[None]
    subscriptions: list[RedisSubscription] = field(default_factory=list)


class RedisEngine(Engine):
    """`client_name` names the Redis connections (CLIENT LIST) for operators and tests."""

    def __init__(
        self,
        url: str,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
        client_name: str | None = None,
        subscribe_timeout_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.prefix = prefix
        self.clock = clock
        self.subscribe_timeout_s = subscribe_timeout_s
        # A burst (thousands of sockets joining at once) waits for a connection
        # instead of failing with "Too many connections".
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            client_name=client_name,
            max_connections=max_connections,
            timeout=subscribe_timeout_s,
        )
        self._redis = redis.asyncio.Redis.from_pool(pool)
        self._pubsub = self._redis.pubsub()
        self._channels: dict[str, _Channel] = {}  # by Redis channel name
        self._lock = asyncio.Lock()  # orders SUBSCRIBE/UNSUBSCRIBE with the local table
        self._listener: asyncio.Task[None] | None = None
        self._join = self._redis.register_script(_JOIN)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._list = self._redis.register_script(_LIST)
        self._claim = self._redis.register_script(_CLAIM)
        self._lease = self._redis.register_script(_LEASE)
        self._release = self._redis.register_script(_RELEASE)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        await self._pubsub.connect()
        self._listener = asyncio.create_task(self._listen(), name="rooms-engine-pubsub")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._channels.clear()
        await self._pubsub.aclose()
        await self._redis.aclose()

    # Fan-out

    async def publish(self, channel: str, message: Message) -> None:
        await self._redis.publish(self._key("channel", channel), json.dumps(message))

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, text in encoded(messages):
                pipe.publish(self._key("channel", channel), text)
            await pipe.execute()

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        name = self._key("channel", channel)
        subscription = RedisSubscription(self, channel, name, callback)
        async with self._lock:
            state = self._channels.get(name)
            if state is None:
                # In the table before SUBSCRIBE is sent, so the listener finds the
                # confirmation's future whenever it arrives.
                state = _Channel(asyncio.get_running_loop().create_future())
                self._channels[name] = state
                try:
                    await self._pubsub.subscribe(name)
                except BaseException:
                    del self._channels[name]
                    raise
            state.subscriptions.append(subscription)
        try:
            # Shielded: a cancelled subscriber must not cancel the wait of the others.
            await asyncio.wait_for(asyncio.shield(state.ready), self.subscribe_timeout_s)
        except BaseException:
            await subscription.close()
            raise
        return subscription

    async def _unsubscribe(self, subscription: RedisSubscription) -> None:
        async with self._lock:
            state = self._channels.get(subscription.name)
            if state is None or subscription not in state.subscriptions:
                return
            state.subscriptions.remove(subscription)
            if not state.subscriptions:
                del self._channels[subscription.name]
                await self._pubsub.unsubscribe(subscription.name)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except Exception as exc:
                # Whatever happens, this process must not silently stop receiving;
                # redis-py re-subscribes every channel when it reconnects.
                expected = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
                logger.warning(
                    "pub/sub listener: %r; retrying in %.1fs", exc, backoff, exc_info=not expected
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, str]) -> None:
        state = self._channels.get(message["channel"])
        if state is None:
            return
        if message["type"] == "subscribe":
            if not state.ready.done():
                state.ready.set_result(None)
        elif message["type"] == "message":
            try:
                decoded = json.loads(message["data"])
            except ValueError:
                logger.error("dropped a message that is not JSON on %s", message["channel"])
                return
            deliver([s.callback for s in state.subscriptions], decoded)

    # Presence

    def _room_keys(self, room: str) -> list[str]:
        tag = f"presence:{{{room}}}"
        return [self._key(tag, "expiry"), self._key(tag, "members")]

    async def presence_join(
        self, room: str, conn_id: str, member: Message, ttl_s: float, now: float | None = None
    ) -> None:
        expires_at = (self.clock() if now is None else now) + ttl_s
        args: list[str | float] = [conn_id, expires_at, ttl_s, json.dumps(member)]
        await self._join(keys=self._room_keys(room), args=args)

    async def presence_heartbeat(
        self, room: str, conn_id: str, ttl_s: float, now: float | None = None
    ) -> bool:
        now = self.clock() if now is None else now
        args: list[str | float] = [conn_id, now + ttl_s, ttl_s, now]
        return bool(await self._heartbeat(keys=self._room_keys(room), args=args))

    async def presence_heartbeat_many(
        self, entries: list[tuple[str, str]], ttl_s: float, now: float | None = None
    ) -> list[bool]:
        now = self.clock() if now is None else now
        async with self._redis.pipeline(transaction=False) as pipe:
            for room, conn_id in entries:
                args: list[str | float] = [conn_id, now + ttl_s, ttl_s, now]
                await self._heartbeat(keys=self._room_keys(room), args=args, client=pipe)
            return [bool(alive) for alive in await pipe.execute()]

    async def presence_leave(self, room: str, conn_id: str) -> None:
        expiry, members = self._room_keys(room)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(expiry, conn_id)
            pipe.hdel(members, conn_id)
            await pipe.execute()

    async def presence_list(self, room: str, now: float | None = None) -> list[Message]:
        now = self.clock() if now is None else now
        return _members(await self._list(keys=self._room_keys(room), args=[now]))

    async def presence_list_many(
        self, rooms: list[str], now: float | None = None
    ) -> list[list[Message]]:
        now = self.clock() if now is None else now
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                await self._list(keys=self._room_keys(room), args=[now], client=pipe)
            return [_members(flat) for flat in await pipe.execute()]

    # Timers

    def _timer_keys(self) -> list[str]:
        return [self._key("{timers}", "due"), self._key("{timers}", "payload")]

    async def timer_schedule(self, key: str, due_at: float, payload: Message) -> None:
        due, payloads = self._timer_keys()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(due, {key: due_at})
            pipe.hset(payloads, key, json.dumps(payload))
            await pipe.execute()

    async def timer_schedule_many(self, timers: list[tuple[str, float, Message]]) -> None:
        if not timers:
            return
        due, payloads = self._timer_keys()
        # One ZADD and one HSET in one transaction: the dicts keep a key's last values.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(due, {key: due_at for key, due_at, _ in timers})
            pipe.hset(payloads, mapping={key: json.dumps(p) for key, _, p in timers})
            await pipe.execute()

    async def timer_cancel(self, key: str) -> None:
        due, payloads = self._timer_keys()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(due, key)
            pipe.hdel(payloads, key)
            await pipe.execute()

    async def timer_claim_due(self, now: float, limit: int = 100) -> list[tuple[str, Message]]:
        return _pairs(await self._claim(keys=self._timer_keys(), args=[now, limit]))

    async def timer_count(self) -> int:
        return int(await self._redis.zcard(self._timer_keys()[0]))

    # Counters: a fixed window opened by the first hit (INCR, then PEXPIRE NX).

    async def hit(self, key: str, window_s: float) -> int:
        name = self._key("hits", key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, max(1, int(window_s * 1000)), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def peek(self, key: str) -> int:
        value = await self._redis.get(self._key("hits", key))
        return int(value) if value is not None else 0

    async def remaining(self, key: str) -> float:
        ms = await self._redis.pttl(self._key("hits", key))
        return max(0, int(ms)) / 1000  # -2: no such key, -1: no expiry (never set so)

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._key("hits", key))

    # Leases: SET PX when free or ours, atomically (a Lua script).

    async def lease(self, key: str, owner: str, ttl_s: float) -> str:
        ms = max(1, int(ttl_s * 1000))
        holder = await self._lease(keys=[self._key("lease", key)], args=[owner, ms])
        return str(holder)

    async def lease_owner(self, key: str) -> str | None:
        value = await self._redis.get(self._key("lease", key))
        return None if value is None else str(value)

    async def lease_release(self, key: str, owner: str) -> None:
        await self._release(keys=[self._key("lease", key)], args=[owner])
