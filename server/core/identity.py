"""Who is calling: plain values every layer may hold (docs/design.md "Accounts").

A :class:`Principal` is what authentication gives (server/accounts/auth.py): the
user, as an ORM row or as a :class:`Person`, and the session it came with. They
live in the core because the audit trail, the archive, the rooms and the calls
all name the caller, and none of them should import the login code to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.core.models import User


@dataclass(frozen=True, slots=True)
class EstablishmentRef:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Person:
    """What a long-lived socket keeps of its user: the fields the room and the
    API's JSON read, as plain values. An ORM ``User`` drags its instance state,
    loaded row and relationship along: kilobytes per socket, times thousands."""

    id: int
    username: str
    role: str
    display_name: str
    professional_id: str | None
    establishment_id: int | None
    establishment: EstablishmentRef | None

    @classmethod
    def of(cls, user: User) -> Person:
        est = user.establishment
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            display_name=user.display_name,
            professional_id=user.professional_id,
            establishment_id=user.establishment_id,
            establishment=EstablishmentRef(est.code, est.name) if est else None,
        )


@dataclass
class Principal:
    user: User | Person
    session_id: int
    stale: bool = False  # last_seen_at is older than TOUCH_EVERY
    # When the session ends unless used again (idle or absolute expiry).
    deadline: datetime | None = None

    def detached(self) -> Principal:
        """The same caller holding a :class:`Person` instead of the ORM row."""
        if isinstance(self.user, Person):
            return self
        return Principal(Person.of(self.user), self.session_id, self.stale, self.deadline)

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def establishment_id(self) -> int | None:
        return self.user.establishment_id


def user_json(user: User | Person) -> dict[str, Any]:
    """The caller as ``GET /api/me`` and the room's welcome show it (docs/api.md)."""
    est = user.establishment
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "display_name": user.display_name,
        "professional_id": user.professional_id,
        "establishment": {"code": est.code, "name": est.name} if est else None,
    }


@dataclass(frozen=True)
class SystemPrincipal:
    """The platform itself storing into one exam (signed report PDFs, the
    modality gateway after it has matched the calling AE's establishment)."""

    exam_id: str | None = None
    establishment_id: int | None = None
    role: str = "system"
    source: str = "system"  # what a queue item names as its origin ("dicom:<AE>")
