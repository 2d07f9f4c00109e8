"""Argon2id password hashing (argon2-cffi), with rehash when parameters change.

Hashing and verifying cost tens of milliseconds of CPU by design (RFC 9106): the
``*_async`` methods run them on a worker thread (argon2-cffi releases the GIL while
it hashes), so that a burst of logins does not stall every other request and socket
of the process. At most ``CONCURRENT`` run at once: each holds ``memory_kib``.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from server.core.config import Settings

CONCURRENT = 4


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the user does not exist, so that an unknown
        # username costs the same time as a wrong password.
        self._dummy = self._ph.hash("not a password of anybody")
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        )

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._ph.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._ph.check_needs_rehash(stored_hash)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(CONCURRENT)
        return self._slots

    async def hash_async(self, password: str) -> str:
        """:meth:`hash` off the event loop."""
        async with self._semaphore():
            return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        """:meth:`verify` off the event loop."""
        async with self._semaphore():
            return await asyncio.to_thread(self.verify, stored_hash, password)
