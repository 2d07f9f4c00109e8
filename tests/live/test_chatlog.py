"""Chat messages stored in groups (server/live/chatlog.py, server/core/batching.py): seqs stay
contiguous per exam, retries are stored once, two processes never share a seq."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.composition import app_context
from server.core.batching import Batcher
from server.core.channels import room_channel
from server.core.config import Settings
from server.core.identity import Person
from server.core.models import Exam, ExamEvent, User
from server.live.chatlog import Chat, ChatLog
from server.testing import free_port
from tests.exams.test_commands import ClientFor, new_exam


async def author(settings: Settings, username: str) -> Person:
    async with app_context(settings) as app, app.read() as db:
        user = await db.scalar(select(User).where(User.username == username))
        assert user is not None
        return Person.of(user)


async def stored_events(settings: Settings, exam_id: str) -> list[tuple[int, str | None]]:
    async with app_context(settings) as app, app.read() as db:
        rows = await db.execute(
            select(ExamEvent.seq, ExamEvent.client_id)
            .where(ExamEvent.exam_id == exam_id)
            .order_by(ExamEvent.seq)
        )
        return [(seq, client_id) for seq, client_id in rows]


async def test_one_batch_many_exams_retries_and_duplicates(
    client_for: ClientFor, settings: Settings
) -> None:
    urg = await client_for("urg_a")
    exam_a, exam_b = await new_exam(urg), await new_exam(urg)
    who = await author(settings, "urg_a")
    async with app_context(settings) as app:
        now = app.now()
        first = await app.chat.append(Chat(exam_a, "m0", "before", who, now))
        log = ChatLog(app)
        # All submitted before the writer runs: one batch.
        results = await asyncio.gather(
            *(
                log.append(Chat(exam, cid, "x", who, now))
                for exam, cid in [
                    (exam_a, "m1"),
                    (exam_b, "m1"),  # the same client id in another exam is another message
                    (exam_a, "m0"),  # a retry of a message stored before
                    (exam_a, "m2"),
                    (exam_a, "m1"),  # a retry inside the same batch
                ]
            )
        )
        await log.close()
    seqs = [r.seq for r in results]
    assert seqs == [first.seq + 1, results[1].seq, first.seq, first.seq + 2, first.seq + 1]
    assert [r.event is not None for r in results] == [True, True, False, True, False]
    assert results[0].event is not None and results[0].event["author"]["id"] == who.id
    events_a = await stored_events(settings, exam_a)
    assert [seq for seq, _ in events_a] == list(range(1, len(events_a) + 1))  # no gap, no twin
    assert [cid for _, cid in events_a if cid] == ["m0", "m1", "m2"]
    async with app_context(settings) as app, app.read() as db:
        exam = await db.get_one(Exam, exam_a)
        assert exam.last_seq == events_a[-1][0]


async def test_two_processes_chatting_in_one_room_never_share_a_seq(
    client_for: ClientFor, settings: Settings
) -> None:
    """Two app contexts (two processes' pools and writers) append to the same exams at
    once, each in batches; on PostgreSQL the batches really overlap."""
    urg = await client_for("urg_a")
    exams = [await new_exam(urg) for _ in range(3)]
    who = await author(settings, "urg_a")
    async with app_context(settings) as one, app_context(settings) as two:
        sends = [
            app.chat.append(Chat(exams[i % 3], f"{name}-{i}", "x", who, app.now()))
            for i in range(60)
            for app, name in ((one, "one"), (two, "two"))
        ]
        # The same client id through both processes at once: stored once.
        sends += [one.chat.append(Chat(exams[0], "both", "x", who, one.now()))]
        sends += [two.chat.append(Chat(exams[0], "both", "x", who, two.now()))]
        results = await asyncio.gather(*sends)
    both = results[-2:]
    assert both[0].seq == both[1].seq
    assert sum(r.event is not None for r in both) == 1
    total = 0
    for exam_id in exams:
        events = await stored_events(settings, exam_id)
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1))
        total += len(events)
    assert total == 3 + 120 + 1  # the request events, every message, "both" once


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def write(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        if -1 in batch:
            raise RuntimeError("the database went away")
        return [n * 10 for n in batch]

    batcher: Batcher[int, int] = Batcher(write, limit=3)
    first = await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3, 4)), return_exceptions=True)
    assert first == [10, 20, 30, 40]
    assert calls == [[1, 2, 3], [4]]  # what waited together, up to the limit
    failed = await asyncio.gather(batcher.submit(5), batcher.submit(-1), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert await batcher.submit(6) == 60


@pytest.mark.parametrize("size", [1, 7])
async def test_batches_respect_the_limit(size: int) -> None:
    seen: list[int] = []

    async def write(batch: Sequence[int]) -> list[int]:
        seen.append(len(batch))
        await asyncio.sleep(0)
        return list(batch)

    batcher: Batcher[int, int] = Batcher(write, limit=size)
    assert await asyncio.gather(*(batcher.submit(n) for n in range(20))) == list(range(20))
    assert max(seen) <= size and sum(seen) == 20


async def test_items_submitted_one_after_another_are_each_written() -> None:
    """The writer task ends when nothing waits; the next item must start another
    (a caller resuming before the old task is cleared must not be stranded)."""
    written: list[int] = []

    async def write(batch: Sequence[int]) -> list[int]:
        written.extend(batch)
        return list(batch)

    batcher: Batcher[int, int] = Batcher(write)
    for n in range(50):
        assert await asyncio.wait_for(batcher.submit(n), timeout=5) == n
    assert written == list(range(50))


@contextlib.contextmanager
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own (it is stopped with SIGSTOP: the shared
    one must not be)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait()


async def test_a_group_commits_while_the_previous_one_waits_for_redis(
    client_for: ClientFor, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Redis frozen (SIGSTOP) after a message is committed: the next message is
    committed all the same, and both reach the room, in order, once Redis is back."""
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    with private_redis(tmp_path) as (url, redis_proc):
        settings = make_settings(redis_url=url)
        who = await author(settings, "urg_a")
        async with app_context(settings) as app:
            seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            subscription = await app.bus.subscribe(room_channel(exam_id), seen.put_nowait)
            redis_proc.send_signal(signal.SIGSTOP)
            first = await asyncio.wait_for(
                app.chat.append(Chat(exam_id, "a", "x", who, app.now())), 10
            )
            second = await asyncio.wait_for(
                app.chat.append(Chat(exam_id, "b", "x", who, app.now())), 10
            )
            assert second.seq == first.seq + 1
            assert seen.empty()  # nothing could be published yet
            redis_proc.send_signal(signal.SIGCONT)
            got = [await asyncio.wait_for(seen.get(), 10) for _ in range(2)]
            assert [m["event"]["id"] for m in got] == ["a", "b"]
            assert [m["event"]["seq"] for m in got] == [first.seq, second.seq]
            await subscription.close()
