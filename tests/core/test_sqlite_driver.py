"""server/core/sqlite_driver.py: a statement takes one trip to aiosqlite's thread, and
answers what SQLAlchemy's own aiosqlite cursor answers (rows, columns, row counts,
generated keys, errors, streamed results)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, String, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.core.db import create_engine, session_factory
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the SQLite driver")


class _Base(DeclarativeBase):
    pass


class Film(_Base):
    __tablename__ = "films"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(40), unique=True)
    seen: Mapped[int] = mapped_column(Integer, default=0)


async def _trips(conn: AsyncConnection) -> list[Any]:
    """Every function the connection sends to its thread from now on."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    sent: list[Any] = []
    execute = raw._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(fn)
        return await execute(fn, *args, **kwargs)

    raw._execute = counted
    return sent


async def _scenario(engine: AsyncEngine) -> dict[str, Any]:
    """What a mix of statements answers, through ``engine``."""
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
    seen: dict[str, Any] = {}
    async with engine.begin() as conn:
        one = await conn.execute(insert(Film).values(title="Vertigo"))
        seen["inserted key"] = one.inserted_primary_key
        many = await conn.execute(insert(Film), [{"title": t} for t in ("Ran", "Ikiru", "M")])
        seen["many rowcount"] = many.rowcount
        back = await conn.execute(
            insert(Film).returning(Film.id, Film.title), [{"title": "Ordet"}, {"title": "Playtime"}]
        )
        seen["returning"] = back.all()
        changed = await conn.execute(update(Film).where(Film.id > 2).values(seen=Film.seen + 1))
        seen["update rowcount"] = changed.rowcount
        result = await conn.execute(select(Film).order_by(Film.id))
        seen["columns"] = list(result.keys())
        seen["rows"] = result.all()
        seen["first"] = (await conn.execute(text("SELECT title FROM films ORDER BY id"))).first()
        seen["empty"] = (await conn.execute(text("SELECT * FROM films WHERE id < 0"))).all()
        streamed = await conn.stream(select(Film.title).order_by(Film.title))
        seen["streamed"] = [row async for row in streamed]
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(insert(Film).values(title="Vertigo"))
        await conn.rollback()
        seen["after the error"] = await conn.scalar(text("SELECT count(*) FROM films"))
    async with session_factory(engine)() as db:
        film = Film(title="Stalker")
        db.add(film)
        await db.flush()
        seen["orm key"] = film.id
        await db.commit()
    return seen


async def test_answers_as_sqlalchemys_own_cursor_does(database_url: str, tmp_path: Any) -> None:
    ours = create_engine(database_url)
    stock = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/stock.db")
    try:
        mine, theirs = await _scenario(ours), await _scenario(stock)
    finally:
        await ours.dispose()
        await stock.dispose()
    assert mine == theirs
    assert mine["rows"][0] == (1, "Vertigo", 0)
    assert mine["update rowcount"] == 4
    assert mine["orm key"] == 7


async def test_a_statement_takes_one_trip(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        async with engine.connect() as conn:
            sent = await _trips(conn)
            await conn.execute(text("SELECT 1"))  # the BEGIN, then the statement
            assert len(sent) == 2
            for statement, params in (
                (select(Film), None),
                (insert(Film).values(title="Ran"), None),
                (insert(Film), [{"title": "Ikiru"}, {"title": "M"}]),
                (update(Film).values(seen=1), None),
            ):
                sent.clear()
                result = await conn.execute(statement, params)
                result.all() if result.returns_rows else None
                assert len(sent) == 1, statement
            sent.clear()
            await conn.commit()
            assert len(sent) == 1
    finally:
        await engine.dispose()
