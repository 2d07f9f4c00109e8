"""The engine for one process (the embedded default): everything in dicts.

It honours the same contract as the Redis engine, including JSON round-tripping of
messages, so that code that works embedded does not break when scaled out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rooms.engine.base import Callback, Engine, Message, Subscription, deliver, encoded


class MemorySubscription(Subscription):
    def __init__(self, engine: MemoryEngine, channel: str, callback: Callback) -> None:
        self.channel = channel
        self.callback = callback
        self._engine = engine

    async def close(self) -> None:
        self._engine._unsubscribe(self)


@dataclass
class _Window:
    count: int
    ends_at: float


@dataclass
class _Room:
    expiry: dict[str, float] = field(default_factory=dict)
    members: dict[str, Message] = field(default_factory=dict)


class MemoryEngine(Engine):
    """`clock` (epoch seconds) is used when a method is not given `now`."""

    def __init__(self, prefix: str = "", clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self.clock = clock
        self._subscriptions: dict[str, list[MemorySubscription]] = {}
        self._rooms: dict[str, _Room] = {}
        self._timers: dict[str, tuple[float, Message]] = {}
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # key -> (owner, expires_at)
        self._sweep_at = 1024

    async def start(self) -> None:
        """Nothing to open: the state lives in this object."""

    async def close(self) -> None:
        self._subscriptions.clear()

    # Fan-out: delivered before publish() returns, in publish order.

    async def publish(self, channel: str, message: Message) -> None:
        self._deliver(channel, json.dumps(message))

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        for channel, text in encoded(messages):
            self._deliver(channel, text)

    def _deliver(self, channel: str, text: str) -> None:
        # Decoded per channel, as a Redis subscriber would; not at all for a channel
        # nobody here listens to (the message was encoded, so it would have gone).
        subscriptions = self._subscriptions.get(channel)
        if subscriptions:
            deliver([s.callback for s in subscriptions], json.loads(text))

    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        subscription = MemorySubscription(self, channel, callback)
        self._subscriptions.setdefault(channel, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: MemorySubscription) -> None:
        subscriptions = self._subscriptions.get(subscription.channel, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions:
            self._subscriptions.pop(subscription.channel, None)

    # Presence

    async def presence_join(
        self, room: str, conn_id: str, member: Message, ttl_s: float, now: float | None = None
    ) -> None:
        entry = self._rooms.setdefault(room, _Room())
        entry.expiry[conn_id] = (self.clock() if now is None else now) + ttl_s
        entry.members[conn_id] = json.loads(json.dumps(member))

    async def presence_heartbeat(
        self, room: str, conn_id: str, ttl_s: float, now: float | None = None
    ) -> bool:
        now = self.clock() if now is None else now
        self._prune(room, now)
        entry = self._rooms.get(room)
        if entry is None or conn_id not in entry.expiry:
            return False
        entry.expiry[conn_id] = now + ttl_s
        return True

    async def presence_leave(self, room: str, conn_id: str) -> None:
        entry = self._rooms.get(room)
        if entry is not None:
            entry.expiry.pop(conn_id, None)
            entry.members.pop(conn_id, None)

    async def presence_list(self, room: str, now: float | None = None) -> list[Message]:
        self._prune(room, self.clock() if now is None else now)
        entry = self._rooms.get(room)
        if entry is None:
            return []
        return [{**entry.members[c], "conn_id": c} for c in sorted(entry.members)]

    def _prune(self, room: str, now: float) -> None:
        entry = self._rooms.get(room)
        if entry is None:
            return
        for conn_id in [c for c, expiry in entry.expiry.items() if expiry <= now]:
            del entry.expiry[conn_id], entry.members[conn_id]
        if not entry.expiry:
            del self._rooms[room]

    # Timers: a linear scan per claim is fine for the few thousand timers of one site.

    async def timer_schedule(self, key: str, due_at: float, payload: Message) -> None:
        self._timers[key] = (due_at, json.loads(json.dumps(payload)))

    async def timer_cancel(self, key: str) -> None:
        self._timers.pop(key, None)

    async def timer_claim_due(self, now: float, limit: int = 100) -> list[tuple[str, Message]]:
        ready = sorted((due_at, key) for key, (due_at, _) in self._timers.items() if due_at <= now)
        return [(key, self._timers.pop(key)[1]) for _, key in ready[:limit]]

    async def timer_count(self) -> int:
        return len(self._timers)

    # Counters

    async def hit(self, key: str, window_s: float) -> int:
        now = self.clock()
        if len(self._windows) >= self._sweep_at:
            # Forget closed windows, as Redis expires them; amortised over many hits.
            self._windows = {k: w for k, w in self._windows.items() if w.ends_at > now}
            self._sweep_at = max(1024, 2 * len(self._windows))
        window = self._windows.get(key)
        if window is None or window.ends_at <= now:
            window = self._windows[key] = _Window(0, now + window_s)
        window.count += 1
        return window.count

    async def peek(self, key: str) -> int:
        window = self._windows.get(key)
        if window is None or window.ends_at <= self.clock():
            return 0
        return window.count

    async def remaining(self, key: str) -> float:
        window = self._windows.get(key)
        if window is None:
            return 0.0
        return max(0.0, window.ends_at - self.clock())

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    # Leases

    async def lease(self, key: str, owner: str, ttl_s: float) -> str:
        current = await self.lease_owner(key)
        if current is None or current == owner:
            self._leases[key] = (owner, self.clock() + ttl_s)
            return owner
        return current

    async def lease_owner(self, key: str) -> str | None:
        held = self._leases.get(key)
        if held is None or held[1] <= self.clock():
            self._leases.pop(key, None)
            return None
        return held[0]

    async def lease_release(self, key: str, owner: str) -> None:
        if await self.lease_owner(key) == owner:
            del self._leases[key]
