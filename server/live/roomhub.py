"""The connections this process holds, and what it does for all of them at once:
presence heartbeats, and pushing presence to local members when a member of
another (perhaps killed) process has expired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Protocol

from server.core.channels import room_channel

if TYPE_CHECKING:
    from rooms.engine.base import Engine

log = logging.getLogger("teleimagerie.room")

CHUNK = 100  # heartbeats or presence lists per round trip


def presence_lag_s(ttl_s: float, interval_s: float) -> float:
    """The longest a member of a killed process stays in the others' presence:
    its last heartbeat set its expiry at most ``ttl_s`` after the kill, and the
    other processes notice the expiry at their next upkeep, at most ``interval_s``
    later (docs/rooms.md "Presence"). A heartbeat every third of the ttl lets a
    live member miss two before it is dropped."""
    return ttl_s + interval_s


class CollectorPolicy:
    """Keep long-lived sockets out of the garbage collector's full passes.

    A full pass walks every tracked object; with thousands of sockets that is
    50-200 ms during which no socket is served (docs/benchmarks.md "Exam rooms").
    Once the set of sockets has grown by a quarter, what is alive is frozen
    (``gc.freeze``): full passes skip it. Frozen objects that later become cyclic
    garbage (a closed socket's task and frames) are not reclaimed while frozen, so
    everything is unfrozen every ``thaw_s`` and the next full pass reclaims them.
    """

    def __init__(self, thaw_s: float = 900.0) -> None:
        self.thaw_s = thaw_s
        self.frozen_at_count = 0
        self.thawed_at: float | None = None

    def start(self) -> None:
        """Everything loaded so far (modules, tables, the app) lives as long as the
        process: out of the full passes from the start."""
        gc.collect()
        gc.freeze()

    def joined(self, connections: int) -> bool:
        """Called as sockets join; True when it froze."""
        if connections >= 100 and connections > self.frozen_at_count * 1.25:
            gc.freeze()
            self.frozen_at_count = connections
            return True
        return False

    def tick(self, now: float) -> bool:
        """Called now and then; True when it thawed."""
        if self.thawed_at is None:
            self.thawed_at = now
        elif now - self.thawed_at >= self.thaw_s:
            gc.unfreeze()
            self.thawed_at = now
            self.frozen_at_count = 0
            return True
        return False


class Connection(Protocol):
    """What the hub needs of one member's socket (server/live/room.py's
    ``Connection`` is the one there is)."""

    exam_id: str
    conn_id: str

    @property
    def member(self) -> dict[str, Any]: ...

    def on_message(self, message: dict[str, Any]) -> None: ...


def public_presence(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What members see of a room's presence entries (not the connection ids)."""
    return [{"user": m["user"], "role": m["role"], "since": m["since"]} for m in members]


class RoomHub:
    def __init__(
        self, bus: Engine, ttl_s: float, interval_s: float | None = None, freeze: bool = False
    ) -> None:
        self.bus = bus
        self.ttl_s = ttl_s
        self.interval_s = interval_s if interval_s is not None else ttl_s / 3
        self.rooms: dict[str, set[Connection]] = defaultdict(set)
        self._last: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.collector = CollectorPolicy() if freeze else None
        self.count = 0

    def add(self, conn: Connection) -> None:
        self.rooms[conn.exam_id].add(conn)
        self.count += 1
        if self.collector is not None:
            self.collector.joined(self.count)

    def remove(self, conn: Connection) -> None:
        members = self.rooms.get(conn.exam_id)
        if members is not None and conn in members:
            members.discard(conn)
            self.count -= 1
            if not members:
                del self.rooms[conn.exam_id]
                self._last.pop(conn.exam_id, None)

    @property
    def connection_count(self) -> int:
        return self.count

    def start(self) -> None:
        if self.collector is not None:
            self.collector.start()
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
        if self.collector is not None:
            self.collector.tick(time.monotonic())
        await self.upkeep()

    async def upkeep(self) -> None:
        """Heartbeat every local connection, then push presence to the local members
        of rooms whose presence changed (a member of a killed process expired).

        In chunks of ``CHUNK`` per round trip, yielding between them: thousands of
        sockets would otherwise cost thousands of round trips, or one long stall of
        the event loop that every socket's latency would show."""
        conns = [conn for members in list(self.rooms.values()) for conn in list(members)]
        for start in range(0, len(conns), CHUNK):
            chunk = conns[start : start + CHUNK]
            alive = await self.bus.presence_heartbeat_many(
                [(room_channel(c.exam_id), c.conn_id) for c in chunk], self.ttl_s
            )
            for conn, ok in zip(chunk, alive, strict=True):
                if not ok:  # Redis was flushed or restarted: join again
                    await self.bus.presence_join(
                        room_channel(conn.exam_id), conn.conn_id, conn.member, self.ttl_s
                    )
            await asyncio.sleep(0)
        exam_ids = list(self.rooms)
        for start in range(0, len(exam_ids), CHUNK):
            chunk_ids = exam_ids[start : start + CHUNK]
            lists = await self.bus.presence_list_many([room_channel(e) for e in chunk_ids])
            for exam_id, members in zip(chunk_ids, lists, strict=True):
                current = public_presence(members)
                if current != self._last.get(exam_id):
                    self._last[exam_id] = current
                    frame = {"type": "presence", "presence": current}
                    for conn in list(self.rooms.get(exam_id, ())):
                        conn.on_message(frame)  # held until its welcome is sent
            await asyncio.sleep(0)
