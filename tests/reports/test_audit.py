"""The audit trail: hash chain, append-only table, tamper detection, the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from server.composition import app_context
from server.core import audit
from server.core.config import Settings
from server.core.context import AppContext


async def _fill(app: AppContext, n: int) -> None:
    for i in range(n):
        await audit.record(app, action="exam.read", exam_id=f"exam-{i}", addr="10.0.0.1")


async def _tamper(app: AppContext, sql: str) -> None:
    """What someone with the database's owner rights could do: lift the guard, edit."""
    async with app.sql.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            await conn.execute(text("DROP TRIGGER audit_log_no_update"))
            await conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        await conn.execute(text(sql))
        if conn.dialect.name == "postgresql":  # the database is shared by the next tests
            await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def _cli_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "teleimagerie"
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    return subprocess.run(  # noqa: ASYNC221 - a short, bounded child process
        [str(script), "audit", "verify"], env=env, capture_output=True, text=True, timeout=60
    )


async def test_chain_links_every_row(settings: Settings) -> None:
    async with app_context(settings) as app:
        await _fill(app, 3)
        async with app.db() as db:
            count, head, broken = await audit.verify(db)
            rows = (await db.scalars(select(audit.AuditEntry).order_by(audit.AuditEntry.id))).all()
    assert broken is None and count == 3
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == audit.GENESIS
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    assert head == rows[2].hash == audit.row_hash(rows[2])


async def test_concurrent_appends_never_fork_the_chain(settings: Settings) -> None:
    async with app_context(settings) as app:
        await asyncio.gather(*(audit.record(app, action=f"x.{i}") for i in range(25)))
        async with app.db() as db:
            count, _head, broken = await audit.verify(db)
    assert (count, broken) == (25, None)


async def test_two_processes_writing_in_groups_keep_one_chain(settings: Settings) -> None:
    """Each process groups its standalone rows (AuditWriter); groups of two processes
    and rows written inside other transactions interleave under the chain's lock."""

    async def in_a_transaction(app: AppContext, n: int) -> None:
        async with app.db() as db:
            await audit.record(db, action=f"tx.{n}")
            await db.commit()

    async with app_context(settings) as one, app_context(settings) as two:
        rows = await asyncio.gather(
            *(audit.record(one, action=f"one.{i}") for i in range(30)),
            *(audit.record(two, action=f"two.{i}") for i in range(30)),
            *(in_a_transaction(one, i) for i in range(5)),
        )
        async with one.db() as db:
            count, _head, broken = await audit.verify(db)
            actions = set(await db.scalars(select(audit.AuditEntry.action)))
    assert (count, broken) == (65, None)
    assert len(actions) == 65
    returned = [r for r in rows if r is not None]
    assert len({r.id for r in returned}) == 60  # each caller got its own committed row


async def test_the_table_refuses_updates_and_deletes(settings: Settings) -> None:
    async with app_context(settings) as app:
        await _fill(app, 1)
        for sql in ("UPDATE audit_log SET outcome = 'ok2'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                async with app.sql.begin() as conn:
                    await conn.execute(text(sql))


async def test_an_edited_row_is_named(settings: Settings) -> None:
    async with app_context(settings) as app:
        await _fill(app, 5)
        await _tamper(app, "UPDATE audit_log SET addr = '192.168.1.66' WHERE id = 3")
        async with app.db() as db:
            count, _head, broken = await audit.verify(db)
    assert broken is not None and broken.row_id == 3 and "edited" in broken.reason
    assert count == 2
    done = await asyncio.to_thread(_cli_verify, settings)
    assert done.returncode == 1
    assert "BROKEN at row 3" in done.stderr


async def test_a_deleted_row_is_named_by_its_successor(settings: Settings) -> None:
    async with app_context(settings) as app:
        await _fill(app, 4)
        await _tamper(app, "DELETE FROM audit_log WHERE id = 2")
        async with app.db() as db:
            _count, _head, broken = await audit.verify(db)
    assert broken is not None and broken.row_id == 3 and "deleted" in broken.reason


async def test_cli_verify_on_an_intact_chain(settings: Settings) -> None:
    async with app_context(settings) as app:
        await _fill(app, 2)
    done = await asyncio.to_thread(_cli_verify, settings)
    assert done.returncode == 0, done.stderr
    assert "intact: 2 rows" in done.stdout
