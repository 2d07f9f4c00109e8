"""Running an ASGI application's lifespan in process, as a server would: the
``lifespan.startup`` and ``lifespan.shutdown`` events of the ASGI specification
(asgi.readthedocs.io, "Lifespan Protocol"), for tests that call the app through
httpx's ASGI transport, which sends none of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import ASGIApp, Message


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[None]:
    """Start ``app`` (its startup completes or this raises), yield, then shut it down.

    The lifespan call stays one task for the whole life of the app, as under
    uvicorn: what the startup opens (the context, the timer loop) is closed by the
    same task that opened it.
    """
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: dict[str, Any] = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": {},
    }
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))

    async def answer(sent: str) -> None:
        await inbox.put({"type": f"lifespan.{sent}"})
        message = await _next(outbox, task)
        if message["type"] != f"lifespan.{sent}.complete":
            await task
            raise RuntimeError(f"lifespan {sent} failed: {message.get('message', '')}")

    await answer("startup")
    try:
        yield
    finally:
        await answer("shutdown")
        await task


async def _next(outbox: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message:
    """The app's next message, or its exception if it ended without one."""
    getter = asyncio.ensure_future(outbox.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    task.result()  # raises what the app raised
    raise RuntimeError("the app ended its lifespan without answering")
