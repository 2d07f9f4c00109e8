"""Calls through a real server: real room sockets, real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from server.calls.client import CallClient
from server.testing import LiveServer
from tests.calls.conftest import Join, calls_of

pytestmark = pytest.mark.slow


def got_frames(user_id: int, kind: str, n: int = 10) -> Callable[[CallClient], bool]:
    return lambda c: c.received[(user_id, kind)] >= n


def state_users(client: CallClient) -> list[int]:
    return sorted(p["user"]["id"] for p in (client.state or {}).get("participants", []))


async def events(http: httpx.AsyncClient, exam_id: str) -> list[dict[str, Any]]:
    resp = await http.get(f"/api/exams/{exam_id}/events")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["events"] if isinstance(body, dict) else body


async def test_three_participants_receive_each_others_media(
    live_server: LiveServer, open_room: Join, http: httpx.AsyncClient, exam_id: str
) -> None:
    urg = await open_room("urg_a", video=True)
    man = await open_room("man_a")
    coord = await open_room("coord", video=True)
    for client in (urg, man, coord):
        await client.join()
    ids = {}
    for client in (urg, man, coord):
        await client.wait_for(lambda c: len(state_users(c)) == 3)
    for p in urg.state["participants"]:  # type: ignore[index]
        ids[p["role"]] = p["user"]["id"]
    assert calls_of(live_server).peer_count == 3

    await urg.wait_for(got_frames(ids["manipulator"], "audio"))
    await urg.wait_for(got_frames(ids["coordinator"], "audio"))
    await urg.wait_for(got_frames(ids["coordinator"], "video", 5))
    await man.wait_for(got_frames(ids["urgentist"], "audio"))
    await man.wait_for(got_frames(ids["urgentist"], "video", 5))
    await man.wait_for(got_frames(ids["coordinator"], "video", 5))
    await coord.wait_for(got_frames(ids["manipulator"], "audio"))
    await coord.wait_for(got_frames(ids["urgentist"], "video", 5))
    # Nobody hears themselves.
    assert (ids["urgentist"], "audio") not in urg.received

    await man.hangup()
    await urg.wait_for(lambda c: len(state_users(c)) == 2)
    assert calls_of(live_server).peer_count == 2
    await urg.hangup()
    await coord.hangup()
    await coord.wait_for(lambda c: state_users(c) == [] and c.state is not None)
    assert calls_of(live_server).peer_count == 0
    assert calls_of(live_server).calls == {}

    kinds = [e["kind"] for e in await events(http, exam_id)]
    assert kinds.count("call.started") == 1
    assert kinds.count("call.ended") == 1
    ended = next(e for e in await events(http, exam_id) if e["kind"] == "call.ended")
    assert sorted(ended["body"]["participants"]) == sorted(ids.values())


async def test_abrupt_disconnect_frees_the_peer(live_server: LiveServer, open_room: Join) -> None:
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    await urg.join()
    await man.join()
    await urg.wait_for(lambda c: len(c.received) > 0)
    assert calls_of(live_server).peer_count == 2

    await man.ws.close()  # no hang-up: the socket just goes away
    await urg.wait_for(lambda c: len(state_users(c)) == 1)
    assert calls_of(live_server).peer_count == 1
    await urg.ws.close()
    await urg.pc.close()  # type: ignore[union-attr]
    for _ in range(200):  # the server notices the closed socket asynchronously
        if calls_of(live_server).peer_count == 0:
            break
        await asyncio.sleep(0.05)
    assert calls_of(live_server).peer_count == 0
    assert calls_of(live_server).calls == {}


async def test_a_full_call_refuses_the_next_participant(
    live_server: LiveServer, open_room: Join
) -> None:
    clients = [await open_room(u) for u in ("urg_a", "man_a", "coord")]
    for client in clients:
        await client.join()
    rad = await open_room("rad")
    await rad.send({"type": "call.offer", "sdp": "v=0\r\n"})
    await rad.wait_for(lambda c: bool(c.errors))
    assert rad.errors[0]["code"] == "call_full"
    assert calls_of(live_server).peer_count == 3


async def test_bad_signalling_gets_error_frames_and_leaks_nothing(
    live_server: LiveServer, open_room: Join, http: httpx.AsyncClient, exam_id: str
) -> None:
    urg = await open_room("urg_a")
    await urg.send({"type": "call.ice", "candidate": {"candidate": "candidate:1 1 udp 1 x 9 typ"}})
    await urg.send({"type": "call.answer", "sdp": "v=0"})
    await urg.send({"type": "call.mute", "audio": True, "video": False})
    await urg.send({"type": "call.hangup"})
    await urg.send({"type": "call.offer", "sdp": "not sdp at all"})
    await urg.wait_for(lambda c: len(c.errors) == 5)
    codes = [e["code"] for e in urg.errors]
    assert codes == ["not_in_call"] * 4 + ["call_failed"]
    assert calls_of(live_server).peer_count == 0
    kinds = [e["kind"] for e in await events(http, exam_id)]
    assert "call.started" not in kinds and "call.ended" not in kinds  # nothing connected
    # The room still works.
    await urg.send({"type": "ping"})
    await urg.wait_for(lambda c: c.frames[-1] == {"type": "pong"})


async def test_mute_and_camera_state_is_shown_to_the_room(open_room: Join) -> None:
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    await urg.join()
    await urg.send({"type": "call.mute", "audio": False, "video": True})
    await man.wait_for(
        lambda c: bool(c.state and c.state["participants"] and c.state["participants"][0]["muted"])
    )
    assert man.state["participants"][0]["video"] is True  # type: ignore[index]
    await urg.send({"type": "call.mute", "audio": "no", "video": True})
    await urg.wait_for(lambda c: bool(c.errors))
    assert urg.errors[0]["code"] == "bad_mute"


async def test_camera_turned_on_mid_call_reaches_the_others(open_room: Join) -> None:
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    await urg.join()
    await man.join()
    await man.wait_for(lambda c: len(state_users(c)) == 2)
    urg_id = next(p["user"]["id"] for p in man.state["participants"] if p["role"] == "urgentist")  # type: ignore[index]
    await man.wait_for(got_frames(urg_id, "audio"))
    assert (urg_id, "video") not in man.received

    await urg.add_video()
    await urg.send({"type": "call.mute", "audio": True, "video": True})
    await man.wait_for(got_frames(urg_id, "video", 5))
    await man.wait_for(lambda c: any(p["video"] for p in (c.state or {}).get("participants", [])))


async def test_a_member_whose_session_ends_leaves_the_call(
    live_server: LiveServer,
    open_room: Join,
    client_for: Callable[[str], Awaitable[httpx.AsyncClient]],
) -> None:
    """Deactivated mid-call: the room socket closes (4401) and the call lets go of
    the member, as after any disconnect (docs/rooms.md "Closing")."""
    urg = await open_room("urg_a")
    man = await open_room("man_a")
    await urg.join()
    await man.join()
    await urg.wait_for(lambda c: len(state_users(c)) == 2)
    admin = await client_for("admin")
    assert (await admin.post("/api/users/man_a/deactivate")).status_code == 200
    await asyncio.wait_for(man.ws.wait_closed(), 1.0)
    assert man.ws.close_code == 4401
    await urg.wait_for(lambda c: len(state_users(c)) == 1, within=5)
    assert calls_of(live_server).peer_count == 1
