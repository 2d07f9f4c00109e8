"""Engines for the contract suite: memory, and Redis for real (TEST_REDIS_URL).

Each test gets a random key prefix on the shared Redis and its keys are deleted
afterwards, so tests and other users of the same Redis never see each other.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio

from rooms.engine import Engine, MemoryEngine
from rooms.engine.redis import RedisEngine

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def redis_pair(prefix: str) -> AsyncIterator[tuple[RedisEngine, RedisEngine]]:
    """Two Redis engines on one Redis, what two processes see; their keys are deleted after."""
    pair = (
        RedisEngine(REDIS_URL, prefix, client_name=f"{prefix}a"),
        RedisEngine(REDIS_URL, prefix, client_name=f"{prefix}b"),
    )
    try:
        for engine in pair:
            await engine.start()
        yield pair
    finally:
        for engine in pair:
            await engine.close()
        client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    return f"test:rooms:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client to look at Redis from outside the engines."""
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_engines(prefix: str) -> AsyncIterator[tuple[RedisEngine, RedisEngine]]:
    async with redis_pair(prefix) as pair:
        yield pair


@pytest.fixture(params=["memory", "redis"])
async def engines(
    request: pytest.FixtureRequest, prefix: str
) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two views of the coordination layer; for memory (one process) both are the same."""
    if request.param == "redis":
        async with redis_pair(prefix) as pair:
            yield pair
        return
    engine = MemoryEngine(prefix)
    await engine.start()
    yield engine, engine
    await engine.close()
