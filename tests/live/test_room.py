"""The exam room over a real WebSocket (docs/rooms.md)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Opcode
from websockets.uri import parse_uri

from rooms.engine import create_engine as create_bus
from rooms.types import EventKind
from server.composition import app_context
from server.core.channels import role_channel
from server.core.config import Settings
from server.core.models import ExamEvent
from server.exams.service import append_event
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import exam_payload, login

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def token_of(client: httpx.AsyncClient) -> str:
    return client.headers["Authorization"].removeprefix("Bearer ")


async def new_exam(urg: httpx.AsyncClient) -> str:
    resp = await urg.post("/api/exams", json=exam_payload())
    assert resp.status_code == 201
    exam_id: str = resp.json()["id"]
    return exam_id


async def presence_roles(room: RoomClient, count: int) -> list[str]:
    """Roles in the first presence frame listing ``count`` members."""
    while True:
        frame = await room.next_of("presence")
        if len(frame["presence"]) == count:
            return sorted(p["role"] for p in frame["presence"])


async def count_chat(settings: Settings) -> int:
    async with app_context(settings) as app, app.db() as db:
        return int(
            await db.scalar(select(func.count()).where(ExamEvent.kind == EventKind.CHAT_MESSAGE))
            or 0
        )


async def test_welcome_chat_ack_and_fan_out(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg, rad = await client_for("urg_a"), await client_for("rad")
    exam_id = await new_exam(urg)
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg)) as a:
        assert a.welcome["exam"]["id"] == exam_id
        assert a.welcome["you"]["username"] == "urg_a"
        assert a.welcome["last_seq"] == 1
        assert [p["role"] for p in a.welcome["presence"]] == ["urgentist"]
        # What each member may do is the server's, per member (docs/rooms.md).
        assert a.welcome["exam"]["commands"] == ["cancel"]
        assert (await a.next_event())["kind"] == "exam.requested"  # replay from seq 0

        async with RoomClient(live_server.ws_url, exam_id, token_of(rad), since=1) as b:
            assert b.welcome["exam"]["commands"] == ["accept"]
            assert await presence_roles(a, 2) == ["radiologist", "urgentist"]
            ack = await a.chat("Patiente de 78 ans, aphasie depuis 1 h.", client_id="m-1")
            assert ack == {"type": "ack", "id": "m-1", "seq": 2}
            for member in (a, b):
                event = await member.next_event()
                assert event["seq"] == 2 and event["kind"] == "chat.message"
                assert event["id"] == "m-1"
                assert event["body"] == {"text": "Patiente de 78 ans, aphasie depuis 1 h."}
                assert event["author"]["display_name"] == "URG_A"
        assert await presence_roles(a, 1) == ["urgentist"]
    assert await count_chat(settings) == 1


async def test_retried_client_id_is_acknowledged_once(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=1) as a:
        first = await a.chat("Allergie à l'iode", client_id="retry-me")
        again = await a.chat("Allergie à l'iode", client_id="retry-me")
        assert first["seq"] == again["seq"] == 2
    # A retry after a reconnect is also recognised.
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=2) as a:
        assert (await a.chat("Allergie à l'iode", client_id="retry-me"))["seq"] == 2
    assert await count_chat(settings) == 1


async def test_resume_with_since_replays_missed_events_in_order(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad = await client_for("urg_a"), await client_for("rad")
    exam_id = await new_exam(urg)
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg)) as a:
        await a.next_event()
        seen = a.last_seq
    # While the urgentist is away: the radiologist accepts and chats.
    assert (await rad.post(f"/api/exams/{exam_id}/accept")).status_code == 200
    async with RoomClient(live_server.ws_url, exam_id, token_of(rad), since=2) as r:
        await r.chat("Je prends, protocole dans 2 min")
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=seen) as a:
        missed = [await a.next_event(), await a.next_event()]
        assert [(e["seq"], e["kind"]) for e in missed] == [
            (2, "exam.accepted"),
            (3, "chat.message"),
        ]
        # Then live, without duplicates.
        protocol = {"text": "Scanner cérébral sans injection puis angioscanner"}
        assert (await rad.post(f"/api/exams/{exam_id}/protocol", json=protocol)).status_code == 200
        live = await a.next_event()
        assert (live["seq"], live["kind"]) == (4, "protocol.proposed")
        with pytest.raises(TimeoutError):
            await a.next_event(timeout=0.3)


async def test_bad_frames_get_error_codes_and_the_room_goes_on(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    cases: list[tuple[Any, str]] = [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"text": "no type"}), "unknown_type"),
        (json.dumps({"type": "chat", "text": "no id"}), "missing_id"),
        (json.dumps({"type": "chat", "id": "x" * 65, "text": "t"}), "id_too_long"),
        (json.dumps({"type": "chat", "id": "e1", "text": ""}), "missing_text"),
        (json.dumps({"type": "chat", "id": "e2", "text": "t" * 8001}), "text_too_long"),
        (b"\xff\xfe binary", "bad_encoding"),
        ("x" * (settings.max_ws_frame_bytes + 1), "frame_too_large"),
    ]
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=1) as a:
        for raw, code in cases:
            await a.send(raw)
            error = await a.next_of("error")
            assert error["code"] == code, (raw[:40], error)
        await a.send({"type": "ping"})
        assert await a.next_of("pong") == {"type": "pong"}
        assert (await a.chat("toujours là"))["seq"] == 2
    assert await count_chat(settings) == 1


async def test_rate_limit(live_server: LiveServer, client_for: ClientFor) -> None:
    urg = await client_for("urg_a")
    exam_id = await new_exam(urg)
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg), since=1) as a:
        for _ in range(60):
            await a.send({"type": "ping"})
        error = await a.next_of("error")
        assert error["code"] == "rate_limited"


async def _close_code(url: str, headers: dict[str, str]) -> int | None:
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code


async def test_close_codes_and_origin(live_server: LiveServer, client_for: ClientFor) -> None:
    urg_a, urg_b, admin = (
        await client_for("urg_a"),
        await client_for("urg_b"),
        await client_for("admin"),
    )
    exam_id = await new_exam(urg_a)
    url = f"{live_server.ws_url}/ws/exams/{exam_id}"
    assert await _close_code(url, {}) == 4401
    assert await _close_code(url, {"Authorization": "Bearer forged"}) == 4401
    assert await _close_code(url, {"Authorization": f"Bearer {token_of(urg_b)}"}) == 4404
    assert await _close_code(url, {"Authorization": f"Bearer {token_of(admin)}"}) == 4403
    missing = f"{live_server.ws_url}/ws/exams/00000000-0000-0000-0000-000000000000"
    assert await _close_code(missing, {"Authorization": f"Bearer {token_of(urg_a)}"}) == 4404

    with pytest.raises(InvalidStatus) as refused:
        await RoomClient(
            live_server.ws_url, exam_id, token_of(urg_a), origin="https://evil.example"
        ).connect()
    assert refused.value.response.status_code == 403
    own = RoomClient(live_server.ws_url, exam_id, token_of(urg_a), origin=live_server.url)
    assert (await own.connect())["exam"]["id"] == exam_id
    await own.close()


async def test_report_drafts_are_hidden_from_site_staff(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    urg, rad = await client_for("urg_a"), await client_for("rad")
    exam_id = await new_exam(urg)
    async with app_context(settings) as app, app.db() as db:
        await append_event(db, exam_id, EventKind.REPORT_DRAFT, None, {"findings": "…"}, app.now())
        await db.commit()
    async with RoomClient(live_server.ws_url, exam_id, token_of(urg)) as a:
        assert (await a.next_event())["kind"] == "exam.requested"
        ack = await a.chat("des nouvelles ?")
        assert (await a.next_event())["seq"] == ack["seq"] == 3  # seq 2 skipped, not shown
    async with RoomClient(live_server.ws_url, exam_id, token_of(rad)) as r:
        kinds = [(await r.next_event())["kind"] for _ in range(3)]
        assert kinds == ["exam.requested", "report.draft", "chat.message"]
    events = (await urg.get(f"/api/exams/{exam_id}/events")).json()["events"]
    assert [e["seq"] for e in events] == [1, 3]


def _raw_socket(port: int, path: str, token: str) -> tuple[socket.socket, ClientProtocol]:
    """A WebSocket client that reads only when told to: a blocking socket with a
    small receive buffer, driven by websockets' sans-I/O protocol."""
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    request = protocol.connect()
    request.headers["Authorization"] = f"Bearer {token}"
    protocol.send_request(request)
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.handshake_exc is None and not protocol.events_received():
        protocol.receive_data(sock.recv(4096))
    sock.settimeout(10)
    return sock, protocol


def _read_until_closed(sock: socket.socket, protocol: ClientProtocol) -> tuple[int, int | None]:
    """Read everything; return the number of text frames and the close code."""
    frames, code = 0, None
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return frames, code
        protocol.receive_data(data)
        for frame in protocol.events_received():
            if frame.opcode == Opcode.TEXT:
                frames += 1
            elif frame.opcode == Opcode.CLOSE:
                code = Close.parse(frame.data).code
                return frames, code


async def _flood_a_silent_client(
    settings: Settings, port: int, path: str, token: str, channel: str
) -> tuple[int, int | None]:
    """Open ``path`` with a client that reads nothing while 700 messages of 60 KB
    (far more than the socket buffers and the send queue hold) are published on
    ``channel``; then read what came: (text frames, close code)."""
    sock, protocol = await asyncio.to_thread(_raw_socket, port, path, token)
    bus = create_bus(settings.redis_url, settings.redis_prefix)
    await bus.start()
    try:
        blob = "x" * 60_000
        for _ in range(700):
            await bus.publish(channel, {"type": "typing", "pad": blob})
        return await asyncio.to_thread(_read_until_closed, sock, protocol)
    finally:
        sock.close()
        await bus.close()


async def test_slow_consumer_is_closed_and_resumes_with_since(
    make_settings: Callable[..., Settings], accounts: object, redis_prefix: str
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:6379/0", redis_prefix=redis_prefix)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            http.headers["Authorization"] = f"Bearer {await login(http, 'urg_a')}"
            exam_id = await new_exam(http)
            token = token_of(http)
        frames, code = await _flood_a_silent_client(
            settings, server.port, f"/ws/exams/{exam_id}", token, f"exam:{exam_id}"
        )
        assert code == 4408
        assert frames < 700
        # Nothing clinical was lost: it resumes from what it saw.
        async with RoomClient(server.ws_url, exam_id, token, since=0) as again:
            assert (await again.next_event())["kind"] == "exam.requested"


async def test_a_notification_channel_that_does_not_read_is_closed(
    make_settings: Callable[..., Settings], accounts: object, redis_prefix: str
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:6379/0", redis_prefix=redis_prefix)
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            token = await login(http, "rad")
        frames, code = await _flood_a_silent_client(
            settings, server.port, "/ws/notifications", token, role_channel("radiologist")
        )
        assert code == 4408
        assert frames < 700
