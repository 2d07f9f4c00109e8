"""Chat messages, stored in groups (server/core/batching.py).

Each message gets the next ``seq`` of its exam, exactly as :func:`server.exams.service.
append_event` gives it, but a batch takes the seqs of all its exams at once and
inserts all its events at once, atomically. A client id already stored (a retry) is
answered with its original seq and stored once, however the retry and the original
were batched.

On PostgreSQL a batch is one statement (:data:`PG_APPEND`, arrays in, one round trip,
prepared once per connection); elsewhere it is a transaction of three statements.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import case, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.types import EventKind
from server.core.batching import Batcher
from server.core.context import AppContext
from server.core.errors import ApiError, not_found
from server.core.identity import Person
from server.core.models import Exam, ExamEvent, User, new_id
from server.exams.publish import publish_batch
from server.exams.service import event_json

log = logging.getLogger("teleimagerie.room")

# One statement, atomic on its own: find the client ids already stored, count the
# new messages per exam, lock those exams' rows in id order (two processes' batches
# cannot deadlock), take the seqs, insert, and return every (exam, client id, seq).
PG_APPEND = """
WITH input AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::int[],
                         $5::timestamptz[], $6::text[])
        WITH ORDINALITY AS t(id, exam_id, client_id, author_id, at, body, ord)
),
stored AS (
    SELECT e.exam_id, e.client_id, e.seq FROM exam_events e
    JOIN input i ON e.exam_id = i.exam_id AND e.client_id = i.client_id
),
fresh AS (
    SELECT i.* FROM input i
    WHERE NOT EXISTS (
        SELECT 1 FROM stored s WHERE s.exam_id = i.exam_id AND s.client_id = i.client_id
    )
),
counts AS (SELECT exam_id, count(*)::int AS n FROM fresh GROUP BY exam_id),
locked AS (
    SELECT x.id FROM exams x JOIN counts c ON c.exam_id = x.id ORDER BY x.id FOR UPDATE OF x
),
bumped AS (
    UPDATE exams x SET last_seq = x.last_seq + c.n, updated_at = $7
    FROM counts c, locked l WHERE x.id = c.exam_id AND l.id = x.id
    RETURNING x.id, x.last_seq - c.n AS base
),
numbered AS (
    SELECT f.*, b.base + row_number() OVER (PARTITION BY f.exam_id ORDER BY f.ord) AS seq
    FROM fresh f JOIN bumped b ON b.id = f.exam_id
),
inserted AS (
    INSERT INTO exam_events (id, exam_id, seq, kind, author_id, client_id, at, body)
    SELECT id, exam_id, seq, $8, author_id, client_id, at, body::json FROM numbered
    RETURNING exam_id, client_id, seq
)
SELECT exam_id, client_id, seq, true AS fresh FROM inserted
UNION ALL
SELECT exam_id, client_id, seq, false FROM stored
"""


def chat_json(chat: Chat, seq: int) -> dict[str, Any]:
    """The event JSON of a stored message (what :func:`server.exams.service.event_json` gives)."""
    event = ExamEvent(
        exam_id=chat.exam_id,
        seq=seq,
        kind=EventKind.CHAT_MESSAGE.value,
        author_id=chat.author.id,
        client_id=chat.client_id,
        at=chat.at,
        body={"text": chat.text},
    )
    return event_json(event, chat.author)


class Conflict(Exception):
    """The same client id was stored by someone else meanwhile: try again."""


@dataclass(frozen=True, slots=True)
class Chat:
    exam_id: str
    client_id: str
    text: str
    author: User | Person
    at: datetime
    # Called with the seq once stored, before the message is published: the
    # sender's ack goes out ahead of the event.
    ack: Callable[[int], None] | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    event: dict[str, Any] | None  # None: the client id was stored before (a retry)


Published = Sequence[tuple[str, dict[str, Any]]]  # one group's (exam id, event JSON)


class ChatLog:
    """``append`` returns once the message is committed and its publication is
    queued: groups are published in the order they were committed, by a task of
    their own, so that the next group's transaction does not wait for the
    previous group's round trip to Redis (docs/rooms.md "Scale")."""

    def __init__(self, app: AppContext, limit: int = 500) -> None:
        self.app = app
        self._batcher: Batcher[Chat, Stored] = Batcher(self._write, limit)
        self._publisher: Batcher[Published, None] = Batcher(self._publish, limit)
        # The writer keeps one connection: each pool checkout would cost
        # PostgreSQL two more round trips per batch (the ping and the reset).
        self._conn: AsyncConnection | None = None

    async def append(self, chat: Chat) -> Stored:
        return await self._batcher.submit(chat)

    async def close(self) -> None:
        await self._publisher.flush()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _write(self, batch: Sequence[Chat]) -> list[Stored]:
        # The same client id sent through another process can slip in between our
        # duplicate check and our commit: the unique constraint refuses it, and
        # the next attempt finds it stored.
        for attempt in range(3):
            try:
                results = await self._write_once(batch)
                break
            except Conflict:
                if attempt == 2:
                    raise
        for chat, result in zip(batch, results, strict=True):
            if chat.ack is not None:
                chat.ack(result.seq)
        events = [
            (chat.exam_id, result.event)
            for chat, result in zip(batch, results, strict=True)
            if result.event is not None
        ]
        if events:
            self._publisher.post(events)
        return results

    async def _publish(self, groups: Sequence[Published]) -> list[None]:
        """The groups committed while the previous ones were being published, in
        one round trip. Stored is stored: a failed publish is logged, and members
        read what they missed from SQL on the next event or when they resume."""
        events = [entry for group in groups for entry in group]
        try:
            await publish_batch(self.app, events)
        except Exception:
            log.exception("could not publish %d stored chat messages", len(events))
        return [None] * len(groups)

    async def _write_once(self, batch: Sequence[Chat]) -> list[Stored]:
        if self._conn is None:
            self._conn = await self.app.sql.connect()
        try:
            if self._conn.dialect.name == "postgresql":
                return await self._statement(self._conn, batch)
            return await self._transaction(self._conn, batch)
        except (IntegrityError, UniqueViolationError) as exc:  # rolled back; connection fine
            raise Conflict() from exc
        except ApiError:
            raise
        except Exception:
            await self.close()  # perhaps a dead connection: the next batch opens another
            raise

    async def _statement(self, db: AsyncConnection, batch: Sequence[Chat]) -> list[Stored]:
        unique: dict[tuple[str, str], Chat] = {}
        for chat in batch:
            unique.setdefault((chat.exam_id, chat.client_id), chat)
        chats = list(unique.values())
        raw = (await db.get_raw_connection()).driver_connection
        assert raw is not None
        rows = await raw.fetch(
            PG_APPEND,
            [new_id() for _ in chats],
            [c.exam_id for c in chats],
            [c.client_id for c in chats],
            [c.author.id for c in chats],
            [c.at for c in chats],
            [json.dumps({"text": c.text}) for c in chats],
            max(c.at for c in chats),
            EventKind.CHAT_MESSAGE.value,
        )
        seqs = {(r["exam_id"], r["client_id"]): (r["seq"], r["fresh"]) for r in rows}
        if len(seqs) != len(unique):  # an exam vanished (deleted): its messages are refused
            raise not_found()
        first: dict[int, dict[str, Any]] = {}
        for key, chat in unique.items():
            seq, fresh = seqs[key]
            if fresh:
                first[id(chat)] = chat_json(chat, seq)
        return [
            Stored(seqs[(chat.exam_id, chat.client_id)][0], first.get(id(chat))) for chat in batch
        ]

    async def _transaction(self, db: AsyncConnection, batch: Sequence[Chat]) -> list[Stored]:
        async with db.begin():
            keys = {(c.exam_id, c.client_id) for c in batch}
            stored: dict[tuple[str, str | None], int] = {
                (exam_id, client_id): seq
                for exam_id, client_id, seq in await db.execute(
                    select(ExamEvent.exam_id, ExamEvent.client_id, ExamEvent.seq).where(
                        tuple_(ExamEvent.exam_id, ExamEvent.client_id).in_(keys)
                    )
                )
            }
            fresh: list[Chat] = []
            for chat in batch:
                key = (chat.exam_id, chat.client_id)
                if key not in stored:
                    stored[key] = 0  # taken below; a second copy in this batch is a retry
                    fresh.append(chat)
            if fresh:
                counts = Counter(chat.exam_id for chat in fresh)
                # Lock the exams' rows in one order (PostgreSQL; SQLite has one
                # writer), so that two processes' batches cannot deadlock.
                locked = (
                    select(Exam.id).where(Exam.id.in_(counts)).order_by(Exam.id).with_for_update()
                )
                now = max(chat.at for chat in fresh)
                last = dict(
                    (
                        await db.execute(
                            update(Exam)
                            .where(Exam.id.in_(locked))
                            .values(
                                last_seq=Exam.last_seq + case(counts, value=Exam.id),
                                updated_at=now,
                            )
                            .returning(Exam.id, Exam.last_seq)
                        )
                    ).all()
                )
                if len(last) != len(counts):  # an exam vanished (deleted): refuse the batch
                    raise not_found()
                next_seq = {exam_id: last[exam_id] - n + 1 for exam_id, n in counts.items()}
                rows: list[dict[str, Any]] = []
                for chat in fresh:
                    seq = next_seq[chat.exam_id]
                    next_seq[chat.exam_id] = seq + 1
                    stored[(chat.exam_id, chat.client_id)] = seq
                    rows.append(
                        {
                            "id": new_id(),
                            "exam_id": chat.exam_id,
                            "seq": seq,
                            "kind": EventKind.CHAT_MESSAGE.value,
                            "author_id": chat.author.id,
                            "client_id": chat.client_id,
                            "at": chat.at,
                            "body": {"text": chat.text},
                        }
                    )
                await db.execute(insert(ExamEvent), rows)
                first = {
                    id(chat): chat_json(chat, row["seq"])
                    for chat, row in zip(fresh, rows, strict=True)
                }
            else:
                first = {}
        return [
            Stored(stored[(chat.exam_id, chat.client_id)], first.get(id(chat))) for chat in batch
        ]
