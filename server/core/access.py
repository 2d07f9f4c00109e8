"""Open sockets follow their session (docs/design.md "Accounts", docs/rooms.md "Closing").

A socket (an exam room, the personal channel) authenticates once, at the upgrade,
and may then stay open for hours. It holds its session here (:class:`Hold`), and
is closed with ``CloseCode.SESSION_ENDED`` (4401) as soon as the session ends:

- on an announcement: whoever ends sessions (logout, "log out everywhere", a
  password change or reset, a deactivation, a role change) revokes them in the
  database, then calls :meth:`SessionWatch.end`, which closes the local sockets at
  once and publishes on the engine's ``access`` channel, which every process with
  open sockets listens to (Redis pub/sub when ``REDIS_URL`` is set);
- by time, which nobody announces: each session's deadline (absolute expiry, or
  idle expiry from its last use) is checked every ``SESSION_CHECK_S``, and the
  database is asked again only for a session whose deadline has passed (it may
  have been used since, over HTTP); every ``SESSION_RECHECK_S`` every session is
  checked in the database, which also catches changes made without an
  announcement (the CLI without Redis, a direct edit).

Frames are checked as well (:meth:`SessionWatch.confirm`): a frame from a socket
whose session has ended is dropped, never stored nor acknowledged.

HTTP requests of the DICOMweb archive come in bursts (a viewer asks for each
frame of a series): :meth:`SessionWatch.recall` gives back a session checked in
SQL less than ``SESSION_CACHE_S`` ago in this process, and never past its
deadline. The announcements that close sockets drop those entries too, here at
once and in the other processes as the message arrives; a change nobody announces
is seen within ``SESSION_CACHE_S`` (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from rooms.types import CloseCode
from server.core.models import User, UserSession

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from rooms.engine.base import Engine, Subscription
    from server.core.config import Settings
    from server.core.identity import Principal

log = logging.getLogger("teleimagerie.access")

CHANNEL = "access"
CHUNK = 500  # session ids per query
CACHED_MAX = 10_000  # sessions remembered for HTTP (``recall``) at most

Ender = Callable[[int, str], None]
"""Closes one socket with (code, reason); must not block (it schedules the close)."""


class Hold:
    """One open socket's hold on its session, and what it was opened as."""

    __slots__ = ("session_id", "user_id", "role", "establishment_id", "end", "ended")

    def __init__(self, principal: Principal, end: Ender) -> None:
        self.session_id = principal.session_id
        self.user_id = principal.user.id
        self.role = principal.role
        self.establishment_id = principal.establishment_id
        self.end = end
        self.ended = False

    def close(self, code: int, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.end(code, reason)


def deadline_of(last_seen_at: datetime, expires_at: datetime, idle_s: int) -> datetime:
    """When a session ends unless used again: idle or absolute expiry, the earlier."""
    return min(expires_at, last_seen_at + timedelta(seconds=idle_s))


class SessionWatch:
    def __init__(
        self,
        settings: Settings,
        bus: Engine,
        read: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.read = read
        self.clock = clock
        self.holds: dict[int, set[Hold]] = {}  # by session id
        self.by_user: dict[int, set[int]] = {}  # user id -> session ids held here
        self.deadlines: dict[int, float] = {}  # session id -> epoch seconds
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._checked_all_at = 0.0
        # Sessions checked in SQL for HTTP: token hash -> (valid until, principal).
        self.checked: dict[str, tuple[float, Principal]] = {}
        self.epoch = 0  # bumped by every end of sessions (``remember`` compares)

    # -- holding ------------------------------------------------------------

    async def hold(self, principal: Principal, end: Ender) -> Hold:
        """Register an open socket; listens on the access channel from the first."""
        await self._start()
        hold = Hold(principal, end)
        sid = hold.session_id
        self.holds.setdefault(sid, set()).add(hold)
        self.by_user.setdefault(hold.user_id, set()).add(sid)
        if principal.deadline is not None:
            self.deadlines[sid] = principal.deadline.timestamp()
        else:
            self.deadlines.setdefault(sid, math.inf)
        return hold

    def release(self, hold: Hold) -> None:
        holds = self.holds.get(hold.session_id)
        if holds is None:
            return
        holds.discard(hold)
        if not holds:
            del self.holds[hold.session_id]
            self.deadlines.pop(hold.session_id, None)
            sessions = self.by_user.get(hold.user_id)
            if sessions is not None:
                sessions.discard(hold.session_id)
                if not sessions:
                    del self.by_user[hold.user_id]

    async def confirm(self, hold: Hold) -> bool:
        """Is the socket's session still live? Free while its deadline is ahead;
        past it, one query (the session may have been used since)."""
        if hold.ended:
            return False
        if time.time() < self.deadlines.get(hold.session_id, 0.0):
            return True
        await self.check([hold.session_id])
        return not hold.ended

    # -- HTTP: sessions checked a moment ago ------------------------------------

    def recall(self, key: str) -> Principal | None:
        """The caller a token hash named when SQL was last asked, if that was
        under ``session_cache_s`` ago and its deadline is ahead; else None."""
        entry = self.checked.get(key)
        if entry is None:
            return None
        until, principal = entry
        if time.time() >= until:
            del self.checked[key]
            return None
        return dataclasses.replace(principal, stale=False)

    async def remember(self, key: str, principal: Principal, epoch: int) -> None:
        """Keep a session SQL has just said is live, unless sessions were ended
        since ``epoch`` (read before the query: the answer may predate the end)."""
        ttl = self.settings.session_cache_s
        if ttl <= 0:
            return
        await self._start()  # from now on, the announcements reach ``checked``
        if epoch != self.epoch:
            return
        until = time.time() + ttl
        if principal.deadline is not None:
            until = min(until, principal.deadline.timestamp())
        if len(self.checked) >= CACHED_MAX:
            now = time.time()
            self.checked = {k: v for k, v in self.checked.items() if v[0] > now}
            if len(self.checked) >= CACHED_MAX:
                self.checked.clear()
        self.checked[key] = (until, principal.detached())

    # -- ending ---------------------------------------------------------------

    async def end(
        self,
        user_id: int,
        sessions: list[int] | None = None,
        keep: int | None = None,
        reason: str = "session ended",
    ) -> None:
        """Close the sockets of ``sessions`` of a user (all of them when None, but
        ``keep``), here at once and in every other process. Call it after the
        sessions are revoked in the database (committed)."""
        message = {"user": user_id, "sessions": sessions, "keep": keep, "reason": reason}
        self._apply(message)
        try:
            await self.bus.publish(CHANNEL, message)
        except Exception:  # the periodic check closes them in the other processes
            log.exception("could not announce the end of sessions of user %s", user_id)

    def _apply(self, message: dict[str, Any]) -> None:
        try:
            user_id = int(message["user"])
            named = message.get("sessions")
            keep = message.get("keep")
            reason = str(message.get("reason") or "session ended")
        except (KeyError, TypeError, ValueError):
            log.error("ignored a malformed access message")
            self.epoch += 1
            self.checked.clear()
            return
        self.epoch += 1
        for key, (_, p) in list(self.checked.items()):
            sid = p.session_id
            if p.user.id == user_id and sid != keep and (named is None or sid in named):
                del self.checked[key]
        for sid in list(self.by_user.get(user_id, ())):
            if sid == keep or (named is not None and sid not in named):
                continue
            self._close_session(sid, reason)

    def _close_session(self, sid: int, reason: str) -> None:
        if sid in self.deadlines:
            self.deadlines[sid] = math.inf  # nothing more to check until released
        for hold in list(self.holds.get(sid, ())):
            hold.close(CloseCode.SESSION_ENDED, reason)

    # -- checking ---------------------------------------------------------------

    async def check(self, session_ids: list[int]) -> None:
        """Ask the database about these sessions; close the sockets of those that
        ended, or whose user's role or establishment changed; note new deadlines."""
        now = self.clock()
        idle_s = self.settings.session_idle_s
        for start in range(0, len(session_ids), CHUNK):
            chunk = session_ids[start : start + CHUNK]
            async with self.read() as db:
                rows = (
                    await db.execute(
                        select(
                            UserSession.id,
                            UserSession.last_seen_at,
                            UserSession.expires_at,
                            UserSession.revoked_at,
                            User.active,
                            User.role,
                            User.establishment_id,
                        )
                        .join(User, User.id == UserSession.user_id)
                        .where(UserSession.id.in_(chunk))
                    )
                ).all()
            found = {row.id: row for row in rows}
            for sid in chunk:
                row = found.get(sid)
                deadline = deadline_of(row.last_seen_at, row.expires_at, idle_s) if row else now
                if row is None or row.revoked_at is not None or not row.active or now >= deadline:
                    self._close_session(sid, "session ended")
                    continue
                if sid not in self.holds:
                    continue  # its sockets closed while we asked
                self.deadlines[sid] = deadline.timestamp()
                for hold in list(self.holds.get(sid, ())):
                    if hold.role != row.role or hold.establishment_id != row.establishment_id:
                        hold.close(CloseCode.SESSION_ENDED, "your role changed: log in again")

    async def tick(self) -> None:
        now = time.time()
        if now - self._checked_all_at >= self.settings.session_recheck_s:
            self._checked_all_at = now
            due = list(self.holds)
        else:
            due = [sid for sid, at in self.deadlines.items() if at <= now]
        if due:
            await self.check(due)

    # -- lifetime ---------------------------------------------------------------

    async def _start(self) -> None:
        if self._task is not None:
            return
        async with self._lock:
            if self._task is not None:
                return
            self._subscription = await self.bus.subscribe(CHANNEL, self._apply)
            self._checked_all_at = time.time()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.session_check_s)
            try:
                await self.tick()
            except Exception:
                log.exception("checking the sessions of open sockets failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.close()
            self._subscription = None
