"""Establishments and users, as the CLI, the API and the demo manage them
(docs/design.md "Accounts").

What ends a user's sessions (a password change or reset, a deactivation, a role
change) revokes them here, in the caller's transaction; once it is committed, the
caller calls :func:`announce`, which closes their open sockets in every process.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import Role
from server.core.context import AppContext
from server.core.models import Establishment, User, UserSession

CENTRE_ONLY = {Role.RADIOLOGIST, Role.COORDINATOR, Role.ADMIN}
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


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


async def establishment_by_code(db: AsyncSession, code: str) -> Establishment:
    """The establishment of this code (case and surrounding spaces aside), or an
    AccountError naming it: what every command given a code resolves first."""
    code = code.strip().upper()
    est = await db.scalar(select(Establishment).where(Establishment.code == code))
    if est is None:
        raise AccountError(f"no establishment {code}")
    return est


def valid_ae_title(title: str, what: str = "an AE title") -> str:
    """PS3.5 6.2 (AE VR): 1-16 characters of the default repertoire, no backslash
    nor control character; leading and trailing spaces are not significant.
    ``what``: the title's name in the error (a modality's, a PACS's, ours)."""
    title = title.strip()
    if not 1 <= len(title) <= 16:
        raise AccountError(f"{what} is 1 to 16 characters")
    if any(ch == "\\" or not (" " <= ch <= "~") for ch in title):
        raise AccountError(f"{what} is printable ASCII without backslash")
    return title


async def set_record_with_report(db: AsyncSession, code: str, on: bool) -> Establishment:
    """Whether the establishment's report deliveries carry the exam's record
    (``settings["record_with_report"]``, docs/accountability.md)."""
    est = await establishment_by_code(db, code)
    # A new dict: the JSON column sees a replaced value, not an edit in place.
    est.settings = {**(est.settings or {}), "record_with_report": on}
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
    check_password(password)
    if await db.scalar(select(User).where(User.username == username)):
        raise AccountError(f"user {username} exists already")
    role_, est_id = await placement(db, role, establishment_code)
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


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")


async def placement(
    db: AsyncSession, role: str, establishment_code: str | None
) -> tuple[Role, int | None]:
    """A role and the establishment it requires (site staff) or forbids (centre)."""
    try:
        role_ = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(Role)}") from None
    if role_ in CENTRE_ONLY:
        if establishment_code:
            raise AccountError(f"a {role_} belongs to the on-call centre, not an establishment")
        return role_, None
    if not establishment_code:
        raise AccountError(f"a {role_} needs --establishment")
    est = await db.scalar(
        select(Establishment).where(Establishment.code == establishment_code.upper())
    )
    if est is None:
        raise AccountError(f"no establishment {establishment_code}")
    return role_, est.id


class NoSuchUser(AccountError):
    pass


async def find_user(db: AsyncSession, username: str) -> User:
    user = await db.scalar(select(User).where(User.username == username))
    if user is None:
        raise NoSuchUser(f"no user {username}")
    return user


async def revoke_sessions(
    app: AppContext, db: AsyncSession, user_id: int, keep: int | None = None
) -> int:
    """Revoke the user's live sessions (but ``keep``); returns how many."""
    where = [UserSession.user_id == user_id, UserSession.revoked_at.is_(None)]
    if keep is not None:
        where.append(UserSession.id != keep)
    ids = list(await db.scalars(select(UserSession.id).where(*where)))
    if ids:
        await db.execute(
            update(UserSession).where(UserSession.id.in_(ids)).values(revoked_at=app.now())
        )
    return len(ids)


async def set_password(
    app: AppContext, db: AsyncSession, user: User, password: str, keep: int | None = None
) -> int:
    """A new password (a change keeps the caller's session, a reset keeps none)."""
    check_password(password)
    user.password_hash = await app.passwords.hash_async(password)
    return await revoke_sessions(app, db, user.id, keep)


async def set_active(app: AppContext, db: AsyncSession, user: User, active: bool) -> int:
    """Deactivate (every session ends) or reactivate (the user logs in again)."""
    user.active = active
    return await revoke_sessions(app, db, user.id) if not active else 0


async def set_role(
    app: AppContext, db: AsyncSession, user: User, role: str, establishment_code: str | None
) -> int:
    """Move a user to another role or establishment: their sessions, opened as
    the former, end."""
    role_, est_id = await placement(db, role, establishment_code)
    user.role = role_
    user.establishment_id = est_id
    return await revoke_sessions(app, db, user.id)


async def announce(
    app: AppContext, user_id: int, keep: int | None = None, reason: str = "session ended"
) -> None:
    """After commit: close the user's open sockets (but ``keep``'s), in every process."""
    await app.access.end(user_id, None, keep, reason)
