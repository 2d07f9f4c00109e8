"""Joins of a burst read together (server/live/joins.py, docs/rooms.md "Scale"):
the same answers as one by one, each caller's access and replay its own, each
join audited."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.accounts.auth import resolve_many
from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.core.errors import ApiError
from server.core.identity import Principal
from server.core.models import Exam
from server.exams.authz import load_exam, load_exams
from server.live.context import LiveContext
from server.live.joins import JoinReader
from server.roomclient import RoomClient
from server.testing import LiveServer
from server.web.app import App
from tests.helpers import exam_payload

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
USERS = ("urg_a", "man_a", "urg_b", "man_b", "rad", "rad2", "coord", "admin")


def token_of(client: httpx.AsyncClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def two_exams(client_for: ClientFor) -> tuple[str, str, dict[str, str]]:
    """An exam of establishment A accepted by ``rad`` (seq 1, 2) and a request of
    establishment B nobody has taken; every user's token."""
    clients = {name: await client_for(name) for name in USERS}
    exam_a = (await clients["urg_a"].post("/api/exams", json=exam_payload())).json()["id"]
    exam_b = (await clients["urg_b"].post("/api/exams", json=exam_payload())).json()["id"]
    assert (await clients["rad"].post(f"/api/exams/{exam_a}/accept")).status_code == 200
    return exam_a, exam_b, {name: token_of(c) for name, c in clients.items()}


@pytest.fixture
async def in_process(
    asgi_app: App, api_for: ClientFor
) -> tuple[LiveContext, str, str, dict[str, str]]:
    """The app in process, and :func:`two_exams` made through it."""
    exam_a, exam_b, tokens = await two_exams(api_for)
    return asgi_app.state.ctx, exam_a, exam_b, tokens


async def test_load_exams_answers_each_caller_as_load_exam_does(
    in_process: tuple[LiveContext, str, str, dict[str, str]],
) -> None:
    app, exam_a, exam_b, tokens = in_process
    async with app.read() as db:
        # Unknown tokens are None; a token twice gets two principals.
        found = await resolve_many(app, db, [*tokens.values(), "forged", tokens["urg_a"]])
        assert found[-2] is None
        assert found[-1] is not None and found[-1] is not found[0]
        principals = [p for p in found if p is not None]
        assert [p.user.username for p in principals] == [*USERS, "urg_a"]
        wanted = [(p, e) for p in principals for e in (exam_a, exam_b, "no-such-exam")]
        together = await load_exams(db, wanted)
        alone = [await _load_or_none(db, p, e) for p, e in wanted]
    assert [e and e.id for e in together] == [e and e.id for e in alone]
    seen = {(p.user.username, e.id) for (p, _), e in zip(wanted, together, strict=True) if e}
    assert seen == {
        ("urg_a", exam_a),
        ("man_a", exam_a),
        ("urg_b", exam_b),
        ("man_b", exam_b),
        ("rad", exam_a),  # theirs
        ("rad", exam_b),  # a request under contract
        ("rad2", exam_b),  # exam_a was taken by rad
        ("coord", exam_a),
        ("coord", exam_b),
    }


async def _load_or_none(db: AsyncSession, principal: Principal, exam_id: str) -> Exam | None:
    try:
        return await load_exam(db, principal, exam_id)
    except ApiError:
        return None


def counted_reader(app: LiveContext) -> tuple[JoinReader, list[list[str]]]:
    """A reader over ``app``'s read sessions that keeps, for each session it
    opens, the statements run in it (the ORM's, relationship loads included)."""
    opened: list[list[str]] = []

    def sessions() -> AsyncSession:
        session = app.read()
        ran: list[str] = []
        opened.append(ran)
        event.listen(
            session.sync_session, "do_orm_execute", lambda state: ran.append(str(state.statement))
        )
        return session

    return JoinReader(sessions, app.settings), opened  # type: ignore[arg-type]


async def test_a_burst_of_joins_is_read_in_one_session_each_with_its_own_replay(
    in_process: tuple[LiveContext, str, str, dict[str, str]],
) -> None:
    app, exam_a, exam_b, tokens = in_process
    async with app.read() as db:
        principals = {
            p.user.username: p.detached()
            for p in await resolve_many(app, db, list(tokens.values()))
            if p is not None
        }
    asks = [
        ("urg_a", exam_a, 0),
        ("man_a", exam_a, 1),
        ("rad", exam_a, 2),
        ("coord", exam_a, 9),  # beyond the log (a restored database): from seq 1
        ("urg_b", exam_a, 0),  # another establishment's exam
        ("urg_b", exam_b, 1),
        ("rad2", exam_a, 0),  # taken by rad
        ("rad2", exam_b, 0),
    ] * 4
    reader, opened = counted_reader(app)
    joined = await asyncio.gather(
        *(reader.read(principals[name], exam, since) for name, exam, since in asks)
    )
    for (name, exam, since), got in zip(asks, joined, strict=True):
        if (name, exam) in {("urg_b", exam_a), ("rad2", exam_a)}:
            assert got is None, name
            continue
        assert got is not None and got.exam_id == exam and got.exam["id"] == exam
        assert got.last_seq == (2 if exam == exam_a else 1)
        assert got.reset == (since > got.last_seq)
        start = 0 if got.reset else since
        assert [e["seq"] for e in got.replay] == list(range(start + 1, got.last_seq + 1))
    # One session; one query per access scope (site A, site B, rad, rad2, coordinator)
    # and one replay per exam, for 32 joins.
    assert len(opened) == 1
    assert len(opened[0]) == 5 + 2, opened[0]


async def _refused(url: str, token: str) -> int | None:
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            pass
        return ws.close_code


async def test_each_join_of_a_burst_is_audited_and_resumes_from_its_since(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    exam_a, _, tokens = await two_exams(client_for)
    members = [("urg_a", 0), ("man_a", 1), ("rad", 2), ("coord", 1)] * 5
    rooms = [RoomClient(live_server.ws_url, exam_a, tokens[n], since=s) for n, s in members]
    url = f"{live_server.ws_url}/ws/exams/{exam_a}"
    welcomes, refusals = await asyncio.gather(
        asyncio.gather(*(room.connect() for room in rooms)),
        asyncio.gather(*(_refused(url, tokens["urg_b"]) for _ in range(3))),
    )
    try:
        assert refusals == [4404] * 3
        for room, (_, since), welcome in zip(rooms, members, welcomes, strict=True):
            assert welcome["last_seq"] == 2
            missed = [(await room.next_event())["seq"] for _ in range(2 - since)]
            assert missed == list(range(since + 1, 3))
    finally:
        await asyncio.gather(*(room.close() for room in rooms))
    async with app_context(settings) as app, app.read() as db:
        rows = (
            await db.scalars(
                select(AuditEntry).where(
                    AuditEntry.exam_id == exam_a,
                    AuditEntry.action.in_(["room.join", "access.denied"]),
                )
            )
        ).all()
    # Each join its own row: who, which exam, from which seq, when.
    joins = [r for r in rows if r.action == "room.join"]
    assert Counter((r.username, r.detail["since"]) for r in joins) == Counter(members)
    assert all(r.outcome == "ok" and r.at is not None and r.user_id for r in joins)
    denied = [
        (r.username, r.outcome, r.detail["code"]) for r in rows if r.action == "access.denied"
    ]
    assert denied == [("urg_b", "denied", "not_found")] * 3
