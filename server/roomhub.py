"""The connections this process holds, and what it does for all of them at once:
presence heartbeats, and pushing presence to local members when a member of
another (perhaps killed) process has expired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from server.publish import room_channel

if TYPE_CHECKING:
    from rooms.engine.base import Engine
    from server.room import Connection

log = logging.getLogger("teleimagerie.room")


class RoomHub:
    def __init__(self, bus: Engine, ttl_s: float, interval_s: float | None = None) -> None:
        self.bus = bus
        self.ttl_s = ttl_s
        self.interval_s = interval_s if interval_s is not None else ttl_s / 3
        self.rooms: dict[str, set[Connection]] = defaultdict(set)
        self._last: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, conn: Connection) -> None:
        self.rooms[conn.exam_id].add(conn)

    def remove(self, conn: Connection) -> None:
        members = self.rooms.get(conn.exam_id)
        if members is not None:
            members.discard(conn)
            if not members:
                del self.rooms[conn.exam_id]
                self._last.pop(conn.exam_id, None)

    @property
    def connection_count(self) -> int:
        return sum(len(m) for m in self.rooms.values())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("presence upkeep failed")

    async def tick(self) -> None:
        from server.room import presence

        for exam_id, conns in list(self.rooms.items()):
            channel = room_channel(exam_id)
            for conn in list(conns):
                alive = await self.bus.presence_heartbeat(channel, conn.conn_id, self.ttl_s)
                if not alive:  # Redis was flushed or restarted: join again
                    await self.bus.presence_join(channel, conn.conn_id, conn.member, self.ttl_s)
            current = await presence(conn.app, exam_id)
            if current != self._last.get(exam_id):
                self._last[exam_id] = current
                frame = {"type": "presence", "presence": current}
                for conn in list(conns):
                    conn.push(frame)
