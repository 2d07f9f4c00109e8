"""What a room join reads from SQL, for the joins of a burst at once
(docs/rooms.md "Scale").

A restarted process gets all its clients back within a few seconds, and a
reconnect storm is thousands of joins that each need the same few things: the
exam as the caller may see it, its last seq, the events the caller missed. Read
one by one, each join costs a session, a query for the exam and often one for
the replay. A :class:`JoinReader` queues them (server/core/batching.py) and
reads everything that arrived while the previous group was being read in one
session: one query per distinct access scope for the exams
(``server.exams.authz.load_exams``), one replay query per exam from the lowest
``since`` that needs one, and each exam's body once per role. A lone join is
read at once; the group is only what queued behind a read in flight.

Each join still gets exactly what it would have got alone: an exam its caller
may not see is None (the room refuses it), and its replay is the events after
its own ``since``, up to the exam's last seq read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.core.batching import Batcher
from server.core.config import Settings
from server.core.identity import Principal
from server.core.models import ExamEvent, User
from server.exams.authz import load_exams
from server.exams.service import event_json, exam_json


@dataclass(slots=True)
class Joined:
    """What a join read: the exam as the caller sees it, its last seq, whether
    the caller's ``since`` was beyond it (``reset``), and the events they missed
    (shared, read-only, with the other joins of the same exam in the group)."""

    exam_id: str
    exam: dict[str, Any]
    last_seq: int
    reset: bool
    replay: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JoinRead:
    principal: Principal
    exam_id: str
    since: int


async def events_after(db: AsyncSession, exam_id: str, since: int) -> list[dict[str, Any]]:
    """The exam's events after seq ``since``, in order, as frames show them."""
    rows = (
        await db.execute(
            select(ExamEvent, User)
            .outerjoin(User, User.id == ExamEvent.author_id)
            .where(ExamEvent.exam_id == exam_id, ExamEvent.seq > since)
            .order_by(ExamEvent.seq)
        )
    ).all()
    return [event_json(ev, author) for ev, author in rows]


def start_of(since: int, last_seq: int) -> int:
    """Where a caller's replay starts: after ``since``, or from the beginning when
    ``since`` is beyond the log (a database restored from a backup)."""
    return 0 if since > last_seq else since


class JoinReader:
    """``await reader.read(principal, exam_id, since)``: the join's :class:`Joined`,
    or None when the caller may not see the exam (or it does not exist)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._batcher: Batcher[JoinRead, Joined | None] = Batcher(self._read)

    async def read(self, principal: Principal, exam_id: str, since: int) -> Joined | None:
        return await self._batcher.submit(JoinRead(principal, exam_id, since))

    async def _read(self, reads: Sequence[JoinRead]) -> list[Joined | None]:
        async with self.sessions() as db:
            exams = await load_exams(db, [(r.principal, r.exam_id) for r in reads])
            # One replay per exam, from the lowest start among its joins that need one.
            lowest: dict[str, int] = {}
            for r, exam in zip(reads, exams, strict=True):
                if exam is not None and start_of(r.since, exam.last_seq) < exam.last_seq:
                    start = start_of(r.since, exam.last_seq)
                    lowest[exam.id] = min(start, lowest.get(exam.id, start))
            replays = {eid: await events_after(db, eid, start) for eid, start in lowest.items()}
            bodies: dict[tuple[str, str], dict[str, Any]] = {}
            joined: list[Joined | None] = []
            for r, exam in zip(reads, exams, strict=True):
                if exam is None:
                    joined.append(None)
                    continue
                role = r.principal.role
                body = bodies.get((exam.id, role))
                if body is None:
                    body = bodies[exam.id, role] = exam_json(exam, self.settings, role)
                start = start_of(r.since, exam.last_seq)
                replay = [e for e in replays.get(exam.id, ()) if e["seq"] > start]
                joined.append(Joined(exam.id, body, exam.last_seq, r.since > exam.last_seq, replay))
            return joined
