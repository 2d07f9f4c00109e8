"""Per-connection rate limiting, as a token bucket with time passed in.

A bucket lets a burst through (a clinician pasting three short messages) while holding
the sustained rate down, which a fixed window cannot do without letting twice the
limit through at a window boundary. Limits shared between processes (logins, API
calls) use the engine's counters instead (`Engine.hit`).
"""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second refill a bucket of `burst` tokens; it starts full."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated: float | None = None

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens at time `now` (seconds) if there are enough.

        A clock that goes backwards refills nothing rather than raising, so a
        monotonic-clock glitch cannot lock a user out.
        """
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
