"""Login throttling per (username, address), with growing delays (docs/design.md "Accounts").

A lock-out per username lets anybody lock the on-call radiologist out by typing
wrong passwords from anywhere. Here failures are counted per pair of username and
client address: after ``LOGIN_FREE_FAILURES`` of them in ``LOGIN_WINDOW_S``, each
further failure makes that pair wait ``LOGIN_BACKOFF_BASE_S * 2**k`` seconds
(capped at ``LOGIN_BACKOFF_MAX_S``) before its next attempt, answered 429 with
``Retry-After`` meanwhile; the owner on another device or network is not
concerned. Against password spraying (many usernames from one address), an
address that fails ``LOGIN_MAX_FAILURES_ADDR`` times in the window waits for the
window to close. A success forgets its pair's failures.

The counters live in the engine (Redis when configured), so every process of a
deployment shares them.
"""

from __future__ import annotations

import math

from server.core.context import AppContext
from server.core.errors import ApiError


def _pair(username: str, addr: str) -> str:
    return f"{username.strip().lower()}|{addr}"


def delay_after(failures: int, free: int, base_s: float, max_s: float) -> float:
    """The wait a pair earns with its ``failures``-th failure (0 while free)."""
    if failures <= free:
        return 0.0
    return float(min(max_s, base_s * 2 ** min(failures - free - 1, 62)))


def too_many(retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(
        429,
        "too_many_attempts",
        f"too many failed logins from here; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


async def check(app: AppContext, username: str, addr: str) -> None:
    """429 if this pair is waiting, or this address has failed too often."""
    bus = app.bus
    by_addr = f"login:addr:{addr}"
    if await bus.peek(by_addr) >= app.settings.login_max_failures_addr:
        raise too_many(await bus.remaining(by_addr))
    wait = await bus.remaining(f"login:wait:{_pair(username, addr)}")
    if wait > 0:
        raise too_many(wait)


async def failed(app: AppContext, username: str, addr: str) -> float:
    """Count a failure; returns the wait it earned the pair (0 while free)."""
    s = app.settings
    pair = _pair(username, addr)
    failures = await app.bus.hit(f"login:pair:{pair}", s.login_window_s)
    await app.bus.hit(f"login:addr:{addr}", s.login_window_s)
    wait = delay_after(
        failures, s.login_free_failures, s.login_backoff_base_s, s.login_backoff_max_s
    )
    if wait > 0:
        await app.bus.hit(f"login:wait:{pair}", wait)
    return wait


async def succeeded(app: AppContext, username: str, addr: str) -> None:
    pair = _pair(username, addr)
    await app.bus.reset(f"login:pair:{pair}")
    await app.bus.reset(f"login:wait:{pair}")
