"""Logins and sessions: random tokens stored only as SHA-256, cookie or bearer.

Sessions expire after ``SESSION_IDLE_S`` without use and ``SESSION_ABSOLUTE_S``
after login, whichever comes first. Failed logins are throttled per username and
client address (server/accounts/throttle.py); passwords are verified off the event loop.
Open sockets follow their session (server/core/access.py).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts import throttle
from server.core.access import deadline_of
from server.core.batching import Batcher
from server.core.context import AppContext
from server.core.errors import ApiError, unauthenticated
from server.core.identity import Principal
from server.core.models import User, UserSession

COOKIE = "ti_session"
# Where an HTTP request or a socket keeps its caller once authenticated (the
# ASGI scope): asked of SQL once per connection, read by the access log.
SCOPE_KEY = "ti.principal"
# Sessions are touched at most this often, so that reads do not all write.
TOUCH_EVERY = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_token(authorization: str | None, cookie: str | None) -> str | None:
    """The token of a request: its ``Authorization: Bearer`` header, else the
    value of its ``ti_session`` cookie (docs/api.md "Conventions")."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return cookie


async def login(
    app: AppContext, db: AsyncSession, username: str, password: str, addr: str
) -> tuple[str, User]:
    """Check the password and open a session; returns the clear token once."""
    await throttle.check(app, username, addr)
    user = await db.scalar(select(User).where(User.username == username))
    ok = await app.passwords.verify_async(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        await throttle.failed(app, username, addr)
        raise ApiError(401, "bad_credentials", "wrong username or password")
    await throttle.succeeded(app, username, addr)
    if app.passwords.needs_rehash(user.password_hash):
        user.password_hash = await app.passwords.hash_async(password)
    now = app.now()
    token = secrets.token_urlsafe(32)
    db.add(
        UserSession(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=app.settings.session_absolute_s),
            client_addr=addr,
        )
    )
    return token, user


async def resolve(app: AppContext, db: AsyncSession, token: str) -> Principal | None:
    """The live session a token names, or None (unknown, revoked, expired)."""
    return (await resolve_many(app, db, [token]))[0]


async def resolve_many(
    app: AppContext, db: AsyncSession, tokens: Sequence[str]
) -> list[Principal | None]:
    """:func:`resolve` for many tokens in one query (the sockets of a burst)."""
    hashes = [hash_token(token) for token in tokens]
    rows = await db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash.in_(set(hashes)))
    )
    found = {sess.token_hash: (sess, user) for sess, user in rows}
    now = app.now()
    return [_live(app, *found[h], now) if h in found else None for h in hashes]


def _live(app: AppContext, sess: UserSession, user: User, now: datetime) -> Principal | None:
    idle_limit = sess.last_seen_at + timedelta(seconds=app.settings.session_idle_s)
    if sess.revoked_at is not None or now >= sess.expires_at or now >= idle_limit:
        return None
    if not user.active:
        return None
    return Principal(
        user=user,
        session_id=sess.id,
        stale=now - sess.last_seen_at >= TOUCH_EVERY,
        deadline=deadline_of(sess.last_seen_at, sess.expires_at, app.settings.session_idle_s),
    )


class SessionReader:
    """The sessions of sockets that open together, checked together: every token
    that arrived while the previous group was read is looked up in one query
    (server/core/batching.py), so a reconnect storm of N members with N sessions
    costs a query per group, not per socket."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._batcher: Batcher[str, Principal | None] = Batcher(self._read)

    async def resolve(self, token: str) -> Principal | None:
        return await self._batcher.submit(token)

    async def _read(self, tokens: Sequence[str]) -> list[Principal | None]:
        # A token twice in a group gets two principals (over one ORM row).
        async with self.app.read() as db:
            return await resolve_many(self.app, db, tokens)


async def authenticate(
    app: AppContext, token: str | None, reuse: bool = False, reader: SessionReader | None = None
) -> Principal:
    """The caller holding ``token`` (:func:`session_token`), or 401. A session
    last used more than ``TOUCH_EVERY`` ago is touched (its idle clock restarts).
    ``reuse``: a session checked in SQL under ``SESSION_CACHE_S`` ago in this
    process is taken as it was (``SessionWatch.recall``: the archive's bursts of
    frame requests). ``reader``: the session is looked up with the other sockets
    opening at the same time (:class:`SessionReader`)."""
    if not token:
        raise unauthenticated()
    key = hash_token(token) if reuse else ""
    if reuse:
        recalled = app.access.recall(key)
        if recalled is not None:
            return recalled
    epoch = app.access.epoch
    if reader is not None:
        principal = await reader.resolve(token)
    else:
        async with app.read() as db:
            principal = await resolve(app, db, token)
    if principal is None:
        raise ApiError(401, "session_expired", "your session has ended; log in again")
    if principal.stale:
        now = app.now()
        async with app.db() as db:
            expires_at = await db.scalar(
                update(UserSession)
                .where(UserSession.id == principal.session_id)
                .values(last_seen_at=now)
                .returning(UserSession.expires_at)
            )
            await db.commit()
        if expires_at is not None:
            principal.deadline = deadline_of(now, expires_at, app.settings.session_idle_s)
    if reuse:
        await app.access.remember(key, principal, epoch)
    return principal


async def logout(app: AppContext, db: AsyncSession, token: str, now: datetime) -> None:
    """Revoke the session of a token (the caller announces it once committed:
    ``app.access.end``)."""
    await db.execute(
        update(UserSession)
        .where(UserSession.token_hash == hash_token(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
