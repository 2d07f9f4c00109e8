"""The roster, routing, notifications and turnaround over real HTTP and WebSocket
(live server, memory engine: the web process runs the timers itself)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.testing import LiveServer
from tests.conftest import Accounts
from tests.helpers import exam_payload, login

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def iso(value: datetime) -> str:
    return value.isoformat()


@asynccontextmanager
async def channel(server: LiveServer, client: httpx.AsyncClient) -> AsyncIterator[ClientConnection]:
    """The personal notification channel of a logged-in client, past its welcome."""
    async with connect(
        f"{server.ws_url}/ws/notifications",
        additional_headers={"Authorization": client.headers["Authorization"]},
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        yield ws


async def next_notification(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("kind") == kind:
                return frame

    return await asyncio.wait_for(wait(), 10)


async def add_shift(coord: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    payload = {"radiologist": "rad", "role": "primary", "starts_at": iso(now - timedelta(hours=1)),
               "ends_at": iso(now + timedelta(hours=11))}  # fmt: skip
    payload.update(body)
    resp = await coord.post("/api/shifts", json=payload)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_shifts_are_written_by_coordinators_and_validated(api_for: ClientFor) -> None:
    coord, rad = await api_for("coord"), await api_for("rad")
    created = await add_shift(coord, establishments=["hopa"], max_in_progress=3)
    assert created["radiologist"]["username"] == "rad"
    assert created["establishments"] == ["HOPA"]
    assert (await rad.post("/api/shifts", json={})).status_code == 403
    listed = (await rad.get("/api/shifts")).json()["shifts"]
    assert [s["id"] for s in listed] == [created["id"]]
    now = datetime.now(UTC)
    bad = [
        ({"ends_at": iso(now - timedelta(hours=2))}, "body"),
        ({"radiologist": "urg_a"}, "radiologist"),
        ({"establishments": ["NOPE"]}, "establishments"),
        ({"kind": "session"}, "body"),
        ({"starts_at": "2026-11-28T02:00:00"}, "starts_at"),
        ({"role": "chief"}, "role"),
    ]
    for change, field in bad:
        resp = await coord.post("/api/shifts", json={"radiologist": "rad", "role": "primary",
                                "starts_at": iso(now), "ends_at": iso(now + timedelta(hours=1)),
                                **change})  # fmt: skip
        assert resp.status_code == 422, change
        assert resp.json()["error"]["fields"][0]["field"] == field
    assert len((await coord.get("/api/shifts")).json()["shifts"]) == 1
    assert (await rad.delete(f"/api/shifts/{created['id']}")).status_code == 403
    assert (await coord.delete(f"/api/shifts/{created['id']}")).status_code == 204
    assert (await coord.delete(f"/api/shifts/{created['id']}")).status_code == 404


async def test_roster_at_a_saturday_night(api_for: ClientFor) -> None:
    coord, urg = await api_for("coord"), await api_for("urg_a")
    for rad, pattern in (("rad", "weeknight"), ("rad2", "weekend")):
        resp = await coord.post(
            "/api/shift-templates",
            json={
                "radiologist": rad,
                "role": "primary",
                "pattern": pattern,
                "valid_from": "2026-01-01",
            },
        )
        assert resp.status_code == 201, resp.text
    resp = await coord.get("/api/roster", params={"at": "2027-01-16T02:00:00+01:00"})
    body = resp.json()
    assert [e["establishment"]["code"] for e in body["establishments"]] == ["HOPA", "HOPB"]
    primary = body["establishments"][0]["primary"]
    assert [(p["radiologist"]["username"], p["source"]) for p in primary] == [("rad2", "weekend")]
    holiday = await coord.get("/api/roster", params={"at": "2026-07-14T12:00:00Z"})
    assert holiday.json()["bank_holiday"] == "Fête nationale"
    assert (await coord.get("/api/roster", params={"at": "tomorrow"})).status_code == 400
    assert (await urg.get("/api/roster")).status_code == 403
    years = (await urg.get("/api/bank-holidays", params={"year": "2027"})).json()
    assert {"date": "2027-05-06", "name": "Ascension"} in years["bank_holidays"]


async def test_a_request_goes_to_the_primary_and_notifies_live(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    coord, urg, rad = await client_for("coord"), await client_for("urg_a"), await client_for("rad")
    await add_shift(coord)
    await add_shift(coord, radiologist="rad2", role="backup")
    async with channel(live_server, rad) as rad_ws, channel(live_server, coord) as coord_ws:
        resp = await urg.post("/api/exams", json=exam_payload())
        assert resp.status_code == 201
        exam = resp.json()
        assert exam["assigned_radiologist"]["display_name"] == "RAD"
        for ws in (rad_ws, coord_ws):
            frame = await next_notification(ws, "exam.assigned")
            assert frame["exam"]["id"] == exam["id"]
            assert frame["body"]["source"] == "oncall"
    worklist = (await rad.get("/api/exams")).json()["exams"]
    assert [e["id"] for e in worklist] == [exam["id"]]


async def test_a_session_takes_its_establishment_and_nobody_alerts_coordinators(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    coord = await client_for("coord")
    await add_shift(coord, radiologist="rad2", kind="session", establishments=["HOPA"])
    await add_shift(coord, establishments=["HOPA"])
    resp = await (await client_for("urg_a")).post("/api/exams", json=exam_payload())
    assert resp.json()["assigned_radiologist"]["display_name"] == "RAD2"
    async with channel(live_server, coord) as ws:
        resp = await (await client_for("urg_b")).post("/api/exams", json=exam_payload())
        assert resp.json()["assigned_radiologist"] is None
        frame = await next_notification(ws, "escalation.raised")
        assert frame["body"]["level"] == 0
        assert frame["body"]["reason"] == "nobody_on_duty"
        assert frame["exam"]["id"] == resp.json()["id"]


async def test_notification_channel_needs_a_login_and_an_allowed_origin(
    live_server: LiveServer, accounts: Accounts, http: httpx.AsyncClient
) -> None:
    async with connect(f"{live_server.ws_url}/ws/notifications") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    token = await login(http, "rad")
    async with connect(f"{live_server.ws_url}/ws/notifications",
                       additional_headers={"Authorization": f"Bearer {token}"}) as ws:  # fmt: skip
        welcome = json.loads(await ws.recv())
        assert welcome["channels"] == [f"user:{welcome['user']}", "role:radiologist"]
        await ws.send("not json")
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
    with pytest.raises(InvalidStatus):
        async with connect(f"{live_server.ws_url}/ws/notifications",
                           additional_headers={"Authorization": f"Bearer {token}",
                                               "Origin": "https://evil.example"}):  # fmt: skip
            pass


async def test_turnaround_of_an_exam_and_per_establishment(api_for: ClientFor) -> None:
    urg, man, rad = await api_for("urg_a"), await api_for("man_a"), await api_for("rad")
    coord = await api_for("coord")
    exam_id = (await urg.post("/api/exams", json=exam_payload())).json()["id"]
    await (await api_for("urg_b")).post("/api/exams", json=exam_payload())
    for client, path, body in (
        (rad, "accept", None), (rad, "protocol", {"text": "TDM cérébral sans injection"}),
        (man, "protocol/ack", None), (man, "images-complete", None),
    ):  # fmt: skip
        resp = await client.post(f"/api/exams/{exam_id}/{path}", json=body)
        assert resp.status_code == 200, resp.text
    one = (await urg.get(f"/api/exams/{exam_id}/turnaround")).json()
    assert one["milestones"]["images_complete"] is not None
    assert one["milestones"]["signed"] is None
    assert one["intervals"]["to_accept"] >= 0 and one["intervals"]["to_sign"] is None
    assert one["within_sla"] is None
    assert (
        await (await api_for("urg_b")).get(f"/api/exams/{exam_id}/turnaround")
    ).status_code == 404
    assert (await urg.get("/api/stats/turnaround")).status_code == 403
    stats = (await coord.get("/api/stats/turnaround", params={"from": "2020-01-01"})).json()
    assert stats["establishments"]["HOPA"]["exams"] == 1
    assert stats["establishments"]["HOPA"]["intervals"]["to_images"]["n"] == 1
    assert stats["all"]["exams"] == 2
    only_b = (await coord.get("/api/stats/turnaround", params={"establishment": "HOPB"})).json()
    assert list(only_b["establishments"]) == ["HOPB"]
    assert (await coord.get("/api/stats/turnaround", params={"to": "soon"})).status_code == 400
