"""Engines: the coordination layer between processes (docs/rooms.md "Engines")."""

from __future__ import annotations

from rooms.engine.base import Callback, Engine, Message, Subscription
from rooms.engine.memory import MemoryEngine

__all__ = ["Callback", "Engine", "Message", "MemoryEngine", "Subscription", "create_engine"]


def create_engine(redis_url: str | None, prefix: str) -> Engine:
    """The Redis engine when a URL is configured (REDIS_URL), else the memory engine.

    The Redis module is imported only then, so the embedded default never loads it.
    """
    if redis_url:
        from rooms.engine.redis import RedisEngine

        return RedisEngine(redis_url, prefix)
    return MemoryEngine(prefix)
