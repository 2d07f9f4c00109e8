"""Establishments and users, as the CLI and the demo create them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import Role
from server.context import AppContext
from server.models import Establishment, User

CENTRE_ONLY = {Role.RADIOLOGIST, Role.COORDINATOR, Role.ADMIN}


class AccountError(ValueError):
    pass


async def add_establishment(
    app: AppContext, db: AsyncSession, code: str, name: str, finess: str | None = None
) -> Establishment:
    code = code.strip().upper()
    if not code or len(code) > 32:
        raise AccountError("an establishment code is 1 to 32 characters")
    if await db.scalar(select(Establishment).where(Establishment.code == code)):
        raise AccountError(f"establishment {code} exists already")
    est = Establishment(
        code=code,
        name=name.strip(),
        finess=finess,
        contract_active=True,
        settings={},
        created_at=app.now(),
    )
    db.add(est)
    await db.flush()
    return est


async def add_user(
    app: AppContext,
    db: AsyncSession,
    username: str,
    password: str,
    role: str,
    establishment_code: str | None = None,
    display_name: str | None = None,
    professional_id: str | None = None,
) -> User:
    try:
        role_ = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(Role)}") from None
    if len(password) < 12:
        raise AccountError("a password has at least 12 characters")
    if await db.scalar(select(User).where(User.username == username)):
        raise AccountError(f"user {username} exists already")
    est_id = None
    if role_ in CENTRE_ONLY:
        if establishment_code:
            raise AccountError(f"a {role_} belongs to the on-call centre, not an establishment")
    else:
        if not establishment_code:
            raise AccountError(f"a {role_} needs --establishment")
        est = await db.scalar(
            select(Establishment).where(Establishment.code == establishment_code.upper())
        )
        if est is None:
            raise AccountError(f"no establishment {establishment_code}")
        est_id = est.id
    user = User(
        username=username,
        password_hash=app.passwords.hash(password),
        role=role_,
        establishment_id=est_id,
        display_name=display_name or username,
        professional_id=professional_id,
        active=True,
        created_at=app.now(),
    )
    db.add(user)
    await db.flush()
    return user
