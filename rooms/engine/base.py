"""The engine contract: fan-out, presence, timers and counters (docs/rooms.md "Engines").

Like Django Channels' `BaseChannelLayer`, one interface, two implementations (memory
for one process, Redis for many) and one contract test suite that runs against both
(tests/rooms/test_engine.py). The server and the worker only ever see `Engine`.

Every name given to an engine (channel, room, key) is namespaced by `prefix`, so that
several tenants or test runs can share one Redis.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]
"""A JSON-serialisable dict; subscribers receive a decoded copy, shared between the
subscribers of one process: treat it as read-only."""

Callback = Callable[[Message], None]
"""Called in the subscriber's process for each message; must not block or await (the
server puts the message in a bounded per-connection queue)."""

logger = logging.getLogger("rooms.engine")


class Subscription(ABC):
    """A live subscription of one callback to one channel, until `close()`."""

    __slots__ = ()  # an engine's subscriptions may do without a dict each

    channel: str

    @abstractmethod
    async def close(self) -> None:
        """Stop delivery to this callback; idempotent."""


def encoded(messages: list[tuple[str, Message]]) -> list[tuple[str, str]]:
    """The (channel, JSON text) of each pair, each message encoded once however many
    channels it goes to: a notification is one object sent to several users' and
    roles' channels, and a new exam's JSON is the largest part of it."""
    texts: dict[int, str] = {}  # by id(): the list keeps every message alive meanwhile
    pairs = []
    for channel, message in messages:
        text = texts.get(id(message))
        if text is None:
            text = texts[id(message)] = json.dumps(message)
        pairs.append((channel, text))
    return pairs


def deliver(callbacks: list[Callback], message: Message) -> None:
    """Call each callback; one that raises is logged and does not starve the others."""
    for callback in callbacks:
        try:
            callback(message)
        except Exception:
            logger.exception("subscriber callback failed")


class Engine(ABC):
    """What the server and the worker need from the coordination layer.

    Delivery is at most once: a message published while a process is disconnected
    from Redis is lost for it. Persisted events carry a per-exam `seq`, so a consumer
    that sees a gap fetches the missing events from SQL.
    """

    prefix: str

    @abstractmethod
    async def start(self) -> None:
        """Open connections and start background tasks; call once before use."""

    @abstractmethod
    async def close(self) -> None:
        """Close subscriptions and connections; idempotent."""

    # Fan-out

    @abstractmethod
    async def publish(self, channel: str, message: Message) -> None:
        """Send `message` to every subscription of `channel`, in every process."""

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        """Publish several (channel, message) pairs, in order; an engine may send
        them in one round trip."""
        for channel, message in messages:
            await self.publish(channel, message)

    @abstractmethod
    async def subscribe(self, channel: str, callback: Callback) -> Subscription:
        """Call `callback` with each message published on `channel` from now on.

        Returns once the subscription is effective: any message published after the
        return is delivered (barring a Redis outage), which lets a room subscribe,
        then replay missed events from SQL, without a window where events are lost.
        """

    # Presence

    @abstractmethod
    async def presence_join(
        self, room: str, conn_id: str, member: Message, ttl_s: float, now: float | None = None
    ) -> None:
        """Record a connection in a room until `now + ttl_s` unless it heartbeats."""

    @abstractmethod
    async def presence_heartbeat(
        self, room: str, conn_id: str, ttl_s: float, now: float | None = None
    ) -> bool:
        """Extend a connection's presence; False if it had expired or was never joined,
        in which case the caller joins again (e.g. after Redis was flushed)."""

    async def presence_heartbeat_many(
        self, entries: list[tuple[str, str]], ttl_s: float, now: float | None = None
    ) -> list[bool]:
        """`presence_heartbeat` for several (room, conn_id) pairs; an engine may send
        them in one round trip."""
        return [await self.presence_heartbeat(r, c, ttl_s, now) for r, c in entries]

    @abstractmethod
    async def presence_leave(self, room: str, conn_id: str) -> None:
        """Forget a connection at once (a clean disconnect)."""

    @abstractmethod
    async def presence_list(self, room: str, now: float | None = None) -> list[Message]:
        """The live connections, one entry per connection, sorted by `conn_id`.

        Each entry is the member dict given to join plus `conn_id`. Expired entries
        are pruned, so the members of a killed process vanish after their ttl.
        """

    async def presence_list_many(
        self, rooms: list[str], now: float | None = None
    ) -> list[list[Message]]:
        """`presence_list` of several rooms; an engine may send them in one round trip."""
        return [await self.presence_list(room, now) for room in rooms]

    # Timers

    @abstractmethod
    async def timer_schedule(self, key: str, due_at: float, payload: Message) -> None:
        """Fire `payload` at `due_at` (epoch seconds); scheduling a key again replaces it."""

    async def timer_schedule_many(self, timers: list[tuple[str, float, Message]]) -> None:
        """`timer_schedule` of several (key, due_at, payload); an engine may send them
        in one round trip. A key named twice keeps its last due time and payload."""
        for key, due_at, payload in timers:
            await self.timer_schedule(key, due_at, payload)

    @abstractmethod
    async def timer_cancel(self, key: str) -> None:
        """Forget a timer; no-op if it does not exist or has fired."""

    @abstractmethod
    async def timer_claim_due(self, now: float, limit: int = 100) -> list[tuple[str, Message]]:
        """Remove and return up to `limit` timers due at `now` (inclusive), earliest first.

        Claiming is atomic: however many workers claim concurrently, each timer is
        returned exactly once.
        """

    @abstractmethod
    async def timer_count(self) -> int:
        """How many timers are scheduled (due or not)."""

    # Counters

    @abstractmethod
    async def hit(self, key: str, window_s: float) -> int:
        """Count one hit in the fixed window that the first hit opened; return the count."""

    @abstractmethod
    async def peek(self, key: str) -> int:
        """The count of the current window without counting a hit (0 if none is open)."""

    @abstractmethod
    async def remaining(self, key: str) -> float:
        """Seconds until the current window of a counter closes (0 if none is open):
        what a ``Retry-After`` says."""

    @abstractmethod
    async def reset(self, key: str) -> None:
        """Forget a counter (e.g. after a successful login)."""

    # Leases: one owner of a key among processes, for as long as it renews it.

    @abstractmethod
    async def lease(self, key: str, owner: str, ttl_s: float) -> str:
        """Take `key` for `owner` until `ttl_s` from now if it is free or already
        `owner`'s (then it is renewed); return the owner holding it afterwards. An
        owner that stops renewing (its process died) loses it when `ttl_s` passes."""

    @abstractmethod
    async def lease_owner(self, key: str) -> str | None:
        """Who holds `key` now (None: nobody, or the lease expired)."""

    @abstractmethod
    async def lease_release(self, key: str, owner: str) -> None:
        """Free `key` if `owner` holds it; no-op otherwise."""
