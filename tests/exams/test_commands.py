"""Commands that move an exam (docs/rooms.md "Exam lifecycle"): rules, 409s that write
nothing, races."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.helpers import PASSWORD, exam_payload
from tests.reports.helpers import DRAFT

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
PROTOCOL = {"protocol_id": "ct-head-stroke", "text": "Scanner cérébral sans injection puis angio"}


async def new_exam(urg: httpx.AsyncClient) -> str:
    exam_id: str = (await urg.post("/api/exams", json=exam_payload())).json()["id"]
    return exam_id


async def kinds(client: httpx.AsyncClient, exam_id: str) -> list[str]:
    events = (await client.get(f"/api/exams/{exam_id}/events")).json()["events"]
    return [e["kind"] for e in events]


async def test_the_acquisition_path(api_for: ClientFor) -> None:
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    exam_id = await new_exam(urg)

    accepted = (await rad.post(f"/api/exams/{exam_id}/accept")).json()
    assert accepted["status"] == "accepted"
    assert accepted["assigned_radiologist"]["display_name"] == "RAD"
    assert accepted["times"]["accepted_at"] is not None

    sent = await rad.post(f"/api/exams/{exam_id}/protocol", json=PROTOCOL)
    assert sent.json()["status"] == "protocoled"
    assert sent.json()["protocol"] == {"id": "ct-head-stroke", "text": PROTOCOL["text"]}
    assert (await man.post(f"/api/exams/{exam_id}/protocol/ack")).json()["status"] == "acquiring"
    done = (await man.post(f"/api/exams/{exam_id}/images-complete")).json()
    assert done["status"] == "images_complete"
    assert done["deadlines"]["report_due_at"] is not None

    events = (await urg.get(f"/api/exams/{exam_id}/events")).json()["events"]
    assert [(e["seq"], e["kind"]) for e in events] == [
        (1, "exam.requested"),
        (2, "exam.accepted"),
        (3, "protocol.proposed"),
        (4, "protocol.acknowledged"),
        (5, "exam.images_complete"),
    ]
    assert events[2]["body"]["protocol_version"] == 3
    assert events[2]["body"]["replaces_previous"] is False


async def test_wrong_state_is_409_and_writes_nothing(api_for: ClientFor) -> None:
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    exam_id = await new_exam(urg)
    resp = await man.post(f"/api/exams/{exam_id}/protocol/ack")
    assert resp.status_code == 409
    err = resp.json()["error"]
    assert err["code"] == "wrong_state"
    assert "requested" in err["message"]
    resp = await rad.post(f"/api/exams/{exam_id}/protocol", json=PROTOCOL)
    assert resp.status_code == 409
    assert await kinds(urg, exam_id) == ["exam.requested"]
    assert (await urg.get(f"/api/exams/{exam_id}")).json()["status"] == "requested"


async def test_wrong_role_is_403(api_for: ClientFor) -> None:
    urg, man, coord = [await api_for(u) for u in ("urg_a", "man_a", "coord")]
    exam_id = await new_exam(urg)
    for client, path in (
        (urg, "accept"),
        (man, "accept"),
        (coord, "accept"),
        (urg, "images-complete"),
    ):
        resp = await client.post(f"/api/exams/{exam_id}/{path}")
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"
    assert await kinds(urg, exam_id) == ["exam.requested"]


async def test_other_establishment_cannot_act(api_for: ClientFor) -> None:
    urg_a, man_b, urg_b = [await api_for(u) for u in ("urg_a", "man_b", "urg_b")]
    exam_id = await new_exam(urg_a)
    assert (await man_b.post(f"/api/exams/{exam_id}/protocol/ack")).status_code == 404
    resp = await urg_b.post(f"/api/exams/{exam_id}/cancel", json={"reason": "x"})
    assert resp.status_code == 404
    assert await kinds(urg_a, exam_id) == ["exam.requested"]


async def test_once_accepted_other_radiologists_lose_sight(api_for: ClientFor) -> None:
    urg, rad, rad2 = [await api_for(u) for u in ("urg_a", "rad", "rad2")]
    exam_id = await new_exam(urg)
    assert (await rad.post(f"/api/exams/{exam_id}/accept")).status_code == 200
    assert (await rad2.get(f"/api/exams/{exam_id}")).status_code == 404
    assert (await rad2.post(f"/api/exams/{exam_id}/protocol", json=PROTOCOL)).status_code == 404


async def test_protocol_validation_and_revision(api_for: ClientFor) -> None:
    urg, rad = [await api_for(u) for u in ("urg_a", "rad")]
    exam_id = await new_exam(urg)
    await rad.post(f"/api/exams/{exam_id}/accept")
    resp = await rad.post(
        f"/api/exams/{exam_id}/protocol", json={"protocol_id": "nope", "text": "x"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "protocol_id"
    resp = await rad.post(f"/api/exams/{exam_id}/protocol", json={"text": ""})
    assert resp.status_code == 422
    assert (await rad.post(f"/api/exams/{exam_id}/protocol", json=PROTOCOL)).status_code == 200
    revised = {"text": "Ajouter une perfusion"}
    assert (await rad.post(f"/api/exams/{exam_id}/protocol", json=revised)).status_code == 200
    events = (await urg.get(f"/api/exams/{exam_id}/events")).json()["events"]
    assert events[-1]["body"]["replaces_previous"] is True
    assert events[-1]["body"]["protocol_id"] is None


async def test_cancel(api_for: ClientFor) -> None:
    urg, coord = [await api_for(u) for u in ("urg_a", "coord")]
    exam_id = await new_exam(urg)
    assert (await urg.post(f"/api/exams/{exam_id}/cancel", json={})).status_code == 422
    resp = await coord.post(f"/api/exams/{exam_id}/cancel", json={"reason": "Patient transféré"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "cancelled" and body["cancel_reason"] == "Patient transféré"
    assert (await urg.post(f"/api/exams/{exam_id}/cancel", json={"reason": "x"})).status_code == 409


async def test_concurrent_commands_never_share_a_seq(api_for: ClientFor) -> None:
    urg, rad, rad2 = [await api_for(u) for u in ("urg_a", "rad", "rad2")]
    exam_id = await new_exam(urg)
    # Two radiologists race to accept: exactly one wins, the other gets 409.
    results: list[Any] = await asyncio.gather(
        *[c.post(f"/api/exams/{exam_id}/accept") for c in (rad, rad2) for _ in range(3)]
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1
    assert set(codes) <= {200, 404, 409}
    winner = next(r for r in results if r.status_code == 200).json()["assigned_radiologist"]
    rad_client = rad if winner["display_name"] == "RAD" else rad2
    # Protocol revisions racing: each gets its own seq, none lost.
    results = await asyncio.gather(
        *[
            rad_client.post(f"/api/exams/{exam_id}/protocol", json={"text": f"v{i}"})
            for i in range(8)
        ]
    )
    assert all(r.status_code == 200 for r in results)
    events = (await urg.get(f"/api/exams/{exam_id}/events")).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert [e["kind"] for e in events].count("protocol.proposed") == 8
    assert (await urg.get(f"/api/exams/{exam_id}")).json()["last_seq"] == 10


# Each lifecycle command's route (docs/api.md "Exams and commands"), with a body it accepts.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "accept": ("POST", "accept", None),
    "protocol": ("POST", "protocol", PROTOCOL),
    "protocol_ack": ("POST", "protocol/ack", None),
    "images_complete": ("POST", "images-complete", None),
    "report_draft": ("PUT", "report", DRAFT),
    "report_sign": ("POST", "report/sign", {"password": PASSWORD}),
    "addendum": ("POST", "report/addenda", {"text": "Pas d'autre lésion.", "password": PASSWORD}),
    "acknowledge": ("POST", "acknowledge", {"critical_acknowledged": True}),
    "cancel": ("POST", "cancel", {"reason": "Patient transféré"}),
}
_ACQUIRING = [("rad", "accept"), ("rad", "protocol"), ("man_a", "protocol_ack")]
_DONE = [*_ACQUIRING, ("rad", "report_draft"), ("man_a", "images_complete")]
# Who brings a new exam to each status, and how. A draft is saved during the
# acquisition, so that from then on only the state can refuse a signature.
PATHS: dict[str, list[tuple[str, str]]] = {
    "requested": [],
    "accepted": [("rad", "accept")],
    "protocoled": [("rad", "accept"), ("rad", "protocol")],
    "acquiring": [*_ACQUIRING, ("rad", "report_draft")],
    "images_complete": _DONE,
    "reported": [*_DONE, ("rad", "report_sign")],
    "delivered": [*_DONE, ("rad", "report_sign"), ("urg_a", "acknowledge")],
    "cancelled": [("urg_a", "cancel")],
}


async def test_the_exam_lists_exactly_the_commands_that_succeed(api_for: ClientFor) -> None:
    """For every status and participant, the exam JSON's ``commands`` are the command
    routes that succeed for that user; every other one answers 403 or 409."""
    clients = {u: await api_for(u) for u in ("urg_a", "man_a", "rad", "coord")}

    async def run(user: str, exam_id: str, command: str) -> httpx.Response:
        method, path, body = ROUTES[command]
        return await clients[user].request(method, f"/api/exams/{exam_id}/{path}", json=body)

    async def exam_at(status: str) -> str:
        exam_id = await new_exam(clients["urg_a"])
        for user, command in PATHS[status]:
            resp = await run(user, exam_id, command)
            assert resp.status_code in (200, 201), (status, command, resp.text)
        return exam_id

    offered: dict[tuple[str, str], list[str]] = {}
    for status in PATHS:
        exam_id = await exam_at(status)
        for user, client in clients.items():
            got = await client.get(f"/api/exams/{exam_id}")
            listed = got.json()["commands"] if got.status_code == 200 else []
            offered[status, user] = listed
            for command in ROUTES.keys() - set(listed):
                refused = await run(user, exam_id, command)
                expected = (403, 409) if got.status_code == 200 else (404,)
                assert refused.status_code in expected, (status, user, command, refused.text)
            for command in listed:  # each on an exam of its own: a success moves it on
                done = await run(user, await exam_at(status), command)
                assert done.status_code in (200, 201), (status, user, command, done.text)
        after = (await clients["urg_a"].get(f"/api/exams/{exam_id}")).json()
        assert after["status"] == status  # the refusals changed nothing
    # What the lead radiologist was offered along the way, as a sanity check of the walk.
    assert [offered[s, "rad"] for s in PATHS] == [
        ["accept"],
        ["protocol"],
        ["protocol"],
        ["report_draft"],
        ["report_draft", "report_sign"],
        ["addendum"],
        ["addendum"],
        [],
    ]
