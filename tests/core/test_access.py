"""Open sockets follow the session and the exam (docs/rooms.md "Closing",
docs/design.md "Accounts"): closed with 4401 when the session ends, with 4403 when
another radiologist takes the exam; nothing sent after is stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rooms.types import CloseCode
from server.core.config import Settings
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import exam_payload, login
from tests.live.test_room import count_chat, new_exam, token_of

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]

WITHIN = 1.0  # seconds: a socket is closed this soon after its access ends


async def closing(ws: ClientConnection, timeout: float = WITHIN) -> tuple[int | None, str, list]:
    """Wait for the server to close ``ws``: its code, its reason and the frames
    received before (the test fails if it stays open ``timeout`` seconds)."""
    frames: list[dict[str, Any]] = []

    async def drain() -> None:
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code, ws.close_reason or "", frames


async def room_of(server: LiveServer, exam_id: str, token: str) -> RoomClient:
    room = RoomClient(server.ws_url, exam_id, token)
    await room.connect()
    return room


async def notifications_of(server: LiveServer, token: str) -> ClientConnection:
    ws = await connect(
        f"{server.ws_url}/ws/notifications",
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def test_logout_closes_the_room_and_the_personal_channel_with_4401(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    other = await client_for("urg_a")  # another session of the same user stays
    room = await room_of(live_server, exam_id, token_of(urg))
    kept = await room_of(live_server, exam_id, token_of(other))
    channel = await notifications_of(live_server, token_of(urg))
    assert (await urg.delete("/api/session")).status_code == 204
    code, reason, _ = await closing(room.ws)  # type: ignore[arg-type]
    assert (code, reason) == (CloseCode.SESSION_ENDED, "logged out")
    assert (await closing(channel))[0] == CloseCode.SESSION_ENDED
    assert (await kept.chat("toujours là"))["seq"] == 2
    await kept.close()


async def test_a_chat_frame_sent_after_logout_is_neither_stored_nor_acknowledged(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    room = await room_of(live_server, exam_id, token_of(urg))
    await urg.delete("/api/session")
    with contextlib.suppress(ConnectionClosed):  # the close may be there already
        await room.send({"type": "chat", "id": "late-1", "text": "après la déconnexion"})
    code, _, frames = await closing(room.ws)  # type: ignore[arg-type]
    assert code == CloseCode.SESSION_ENDED
    assert [f for f in frames if f["type"] in ("ack", "error")] == []
    assert [f["event"]["kind"] for f in frames if f["type"] == "event"] == ["exam.requested"]
    assert await count_chat(settings) == 0


async def test_frames_are_checked_when_they_arrive_too(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    """No periodic check runs here (every minute): the chat frame itself finds
    that the session has expired, and is dropped; the socket is closed. The session's
    idle clock runs from the login: the room is joined within its 3 s (a loaded
    machine may take a second or two), and the frame sent just after they end."""
    idle_s = 3
    settings = make_settings(session_idle_s=idle_s, session_check_s=60, session_recheck_s=60)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            urg = await login(http, "urg_a")
            logged_in = time.monotonic()  # the session was last seen before this
            http.cookies.clear()
            resp = await http.post(
                "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {urg}"}
            )
            room = await room_of(server, resp.json()["id"], urg)
            await asyncio.sleep(max(0.0, logged_in + idle_s + 0.1 - time.monotonic()))
            await room.send({"type": "chat", "id": "late-2", "text": "trop tard"})
            code, _, frames = await closing(room.ws)  # type: ignore[arg-type]
    assert code == CloseCode.SESSION_ENDED
    assert [f for f in frames if f["type"] in ("ack", "error")] == []
    assert await count_chat(settings) == 0


async def test_a_session_ended_is_not_taken_from_the_cache_when_a_socket_opens(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    """Sockets take a session checked a moment ago from the process's cache (a
    reconnect storm): a logout empties it at once, so the next socket opened
    with that token is refused, however long the cache would keep it."""
    settings = make_settings(session_cache_s=3600)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            token = await login(http, "urg_a")
            other = await login(http, "urg_a")
            http.cookies.clear()
            bearer = {"Authorization": f"Bearer {token}"}
            resp = await http.post("/api/exams", json=exam_payload(), headers=bearer)
            exam_id = resp.json()["id"]
            for _ in range(2):  # the second join finds the session in the cache
                room = await room_of(server, exam_id, token)
                await room.close()
            kept = await room_of(server, exam_id, other)
            assert (await http.delete("/api/session", headers=bearer)).status_code == 204
            url = f"{server.ws_url}/ws/exams/{exam_id}"
            async with connect(url, additional_headers=bearer) as ws:
                code, reason, frames = await closing(ws)
            assert (code, reason, frames) == (CloseCode.SESSION_ENDED, "not authenticated", [])
            # The user's other session is still taken as it is.
            again = await room_of(server, exam_id, other)
            assert (await again.chat("encore là"))["seq"] == 2
            await again.close()
            await kept.close()


async def test_deactivation_by_an_admin_closes_every_socket_of_the_user(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg, admin = await client_for("urg_a"), await client_for("admin")
    exam_id = await new_exam(urg)
    room = await room_of(live_server, exam_id, token_of(urg))
    channel = await notifications_of(live_server, token_of(urg))
    resp = await admin.post("/api/users/urg_a/deactivate")
    assert resp.status_code == 200 and resp.json()["sessions_ended"] == 1
    assert (await closing(room.ws))[0] == CloseCode.SESSION_ENDED  # type: ignore[arg-type]
    assert (await closing(channel))[0] == CloseCode.SESSION_ENDED
    assert (await urg.get("/api/me")).status_code == 401
    refused = await http_login(live_server, "urg_a")
    assert refused.status_code == 401
    assert (await admin.post("/api/users/urg_a/activate")).status_code == 200
    assert (await http_login(live_server, "urg_a")).status_code == 200


async def http_login(server: LiveServer, username: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post(
            "/api/session", json={"username": username, "password": "correct horse battery staple"}
        )


async def test_a_role_change_closes_the_sockets_opened_as_the_former_role(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad, admin = await client_for("urg_a"), await client_for("rad"), await client_for("admin")
    exam_id = await new_exam(urg)
    room = await room_of(live_server, exam_id, token_of(rad))
    resp = await admin.post("/api/users/rad/role", json={"role": "coordinator"})
    assert resp.status_code == 200, resp.text
    assert (await closing(room.ws))[0] == CloseCode.SESSION_ENDED  # type: ignore[arg-type]
    assert (await rad.get("/api/me")).status_code == 401


async def test_an_expired_session_closes_its_sockets(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    settings = make_settings(session_idle_s=2, session_check_s=0.2)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            urg = await login(http, "urg_a")
            http.cookies.clear()
            resp = await http.post(
                "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {urg}"}
            )
            room = await room_of(server, resp.json()["id"], urg)
            channel = await notifications_of(server, urg)
            # Idle for 2 s (the sockets do not count as use): closed within a second.
            code, _, _ = await closing(room.ws, 2 + WITHIN)  # type: ignore[arg-type]
            assert code == CloseCode.SESSION_ENDED
            assert (await closing(channel, WITHIN))[0] == CloseCode.SESSION_ENDED


async def test_the_radiologist_who_lost_the_race_is_told_who_took_it_and_closed_with_4403(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad, rad2 = await client_for("urg_a"), await client_for("rad"), await client_for("rad2")
    exam_id = await new_exam(urg)
    winner = await room_of(live_server, exam_id, token_of(rad))
    loser = await room_of(live_server, exam_id, token_of(rad2))
    channel = await notifications_of(live_server, token_of(rad2))
    assert (await rad.post(f"/api/exams/{exam_id}/accept")).status_code == 200
    code, reason, frames = await closing(loser.ws)  # type: ignore[arg-type]
    assert (code, reason) == (CloseCode.FORBIDDEN, "taken by RAD")
    lost = [f for f in frames if f["type"] == "access.lost"]
    assert lost == [{"type": "access.lost", "reason": "taken", "by": lost[0]["by"]}]
    assert lost[0]["by"]["display_name"] == "RAD"
    while True:  # the personal channel says it too (the worklist drops the request)
        note = json.loads(await asyncio.wait_for(channel.recv(), WITHIN))
        if note.get("kind") == "exam.taken":
            break
    assert note["body"]["radiologist"]["display_name"] == "RAD"
    assert note["exam"] == {"id": exam_id, "accession_number": note["exam"]["accession_number"]}
    # The winner stays and sees the acceptance.
    assert (await winner.next_event())["kind"] == "exam.requested"
    assert (await winner.next_event())["kind"] == "exam.accepted"
    assert (await winner.chat("je prends"))["seq"] == 3
    await winner.close()
    await channel.close()
