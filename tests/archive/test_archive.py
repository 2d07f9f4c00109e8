"""The archive inside the server: who stores and sees which study, and live
``images.received`` events in the exam room (docs/dicomweb.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from dicomweb_client.api import DICOMwebClient

from dicomweb.samples import ct_series, instance, multipart
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import exam_payload, of_exam

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
NOT_AUTHORIZED = 0x0124
COERCION = 0xB000


async def exam_in_acquisition(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient
) -> dict[str, Any]:
    exam: dict[str, Any] = (await urg.post("/api/exams", json=exam_payload())).json()
    base = f"/api/exams/{exam['id']}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    return exam


async def stow(client: httpx.AsyncClient, parts: list[bytes]) -> httpx.Response:
    body, ctype = multipart(parts)
    return await client.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})


def warning_reasons(resp: httpx.Response) -> list[int]:
    """WarningReason per referenced instance, 0 for none (PS3.18 Table 10.5.3-3)."""
    referenced = resp.json().get("00081199", {}).get("Value", [])
    return [item.get("00081196", {}).get("Value", [0])[0] for item in referenced]


def failure_reasons(resp: httpx.Response) -> list[int]:
    failed = resp.json().get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in failed]


async def test_images_reach_the_room_live(live_server: LiveServer, client_for: ClientFor) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    token = rad.headers["Authorization"].removeprefix("Bearer ")
    async with RoomClient(
        live_server.ws_url, exam["id"], token, since=exam["last_seq"] + 3
    ) as room:
        slices = list(ct_series(5, size=64, **of_exam(exam)))
        resp = await stow(man, slices[:1])
        assert resp.status_code == 200, resp.text
        first = await room.next_event()
        assert first["kind"] == "images.received"
        assert first["body"]["count"] == 1 and first["body"]["modality"] == "CT"
        series_uid = first["body"]["series_uid"]
        assert first["body"]["thumbnail_url"].endswith(f"/series/{series_uid}/thumbnail")
        # The rest of the series in quick succession: coalesced (at most one event a
        # second, so a slow machine may see a count in between), the count catches up.
        for part in slices[1:]:
            assert (await stow(man, [part])).status_code == 200
        counts = [1]
        while counts[-1] < 5:
            update = await room.next_event(timeout=5)
            assert update["kind"] == "images.received"
            assert update["body"]["series_uid"] == series_uid
            counts.append(update["body"]["count"])
        assert counts == sorted(counts) and counts[-1] == 5 and len(counts) <= 5
        thumb = await rad.get(first["body"]["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


async def test_storing_is_scoped_to_the_callers_exams(client_for: ClientFor) -> None:
    urg, rad, man_a, man_b, urg_b = [
        await client_for(u) for u in ("urg_a", "rad", "man_a", "man_b", "urg_b")
    ]
    exam = await exam_in_acquisition(urg, rad, man_a)
    part = instance(**of_exam(exam))
    # Another hospital's radiographer cannot push into this exam: kept aside in
    # their own queue, like an instance of an unknown study.
    aside = await stow(man_b, [part])
    assert aside.status_code == 202 and warning_reasons(aside) == [COERCION]
    # An urgentist does not push images at all.
    assert failure_reasons(await stow(urg, [part])) == [NOT_AUTHORIZED]
    # The right radiographer can; an unknown study beside it is kept aside (202).
    mixed = await stow(man_a, [part, instance()])
    assert mixed.status_code == 202 and warning_reasons(mixed) == [0, COERCION]
    # Nothing of it is visible from the other hospital.
    assert (await urg_b.get("/dicomweb/studies")).json() == []
    study = exam["study_instance_uid"]
    assert (await urg_b.get(f"/dicomweb/studies/{study}/metadata")).status_code == 404
    seen = (await urg.get("/dicomweb/studies")).json()
    assert [s["0020000D"]["Value"][0] for s in seen] == [study]


async def test_radiologists_see_the_studies_of_their_exams(client_for: ClientFor) -> None:
    urg, rad, rad2, man, coord, admin = [
        await client_for(u) for u in ("urg_a", "rad", "rad2", "man_a", "coord", "admin")
    ]
    exam = await exam_in_acquisition(urg, rad, man)
    assert (await stow(man, [instance(**of_exam(exam))])).status_code == 200
    assert len((await rad.get("/dicomweb/studies")).json()) == 1
    assert len((await coord.get("/dicomweb/studies")).json()) == 1
    assert (await rad2.get("/dicomweb/studies")).json() == []
    assert (await admin.get("/dicomweb/studies")).json() == []
    async with httpx.AsyncClient(base_url=str(rad.base_url)) as anonymous:
        assert (await anonymous.get("/dicomweb/studies")).status_code == 401


async def test_dicomweb_client_through_the_server(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_in_acquisition(urg, rad, man)
    assert (await stow(man, list(ct_series(3, size=32, **of_exam(exam))))).status_code == 200
    client = DICOMwebClient(
        url=f"{live_server.url}/dicomweb",
        headers={"Authorization": rad.headers["Authorization"]},
    )
    studies = client.search_for_studies(search_filters={"AccessionNumber": "*"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [exam["study_instance_uid"]]
    series = client.search_for_series(exam["study_instance_uid"])
    instances = client.retrieve_series(
        exam["study_instance_uid"], series[0]["0020000E"]["Value"][0]
    )
    assert len(instances) == 3 and instances[0].Rows == 32


async def test_frames_seen_by_one_hospital_stay_hidden_from_another(
    client_for: ClientFor,
) -> None:
    # The frames route remembers for a few seconds which session may see which
    # study: another hospital asking right after still gets a 404.
    urg, rad, man_a, urg_b = [await client_for(u) for u in ("urg_a", "rad", "man_a", "urg_b")]
    exam = await exam_in_acquisition(urg, rad, man_a)
    parts = list(ct_series(2, size=32, **of_exam(exam)))
    resp = await stow(man_a, parts)
    assert resp.status_code == 200, resp.text
    urls = [item["00081190"]["Value"][0] + "/frames/1" for item in resp.json()["00081199"]["Value"]]
    accept = {"accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    for url in urls:
        assert (await urg.get(url, headers=accept)).status_code == 200
        assert (await rad.get(url, headers=accept)).status_code == 200
        assert (await urg_b.get(url, headers=accept)).status_code == 404


async def test_each_user_sees_the_studies_of_the_exams_they_see(client_for: ClientFor) -> None:
    """One scope rule (server/authz.py `scope_of`) for the worklist and the archive."""
    users = ("urg_a", "man_a", "urg_b", "man_b", "rad", "rad2", "coord", "admin")
    c = {u: await client_for(u) for u in users}
    stored: set[str] = set()
    for urg, rad, man in (("urg_a", "rad", "man_a"), ("urg_b", "rad2", "man_b")):
        exam = await exam_in_acquisition(c[urg], c[rad], c[man])
        assert (await stow(c[man], [instance(**of_exam(exam))])).status_code == 200
        stored.add(exam["study_instance_uid"])
    # A request nobody has accepted yet: every radiologist sees it (no images yet).
    await c["urg_a"].post("/api/exams", json=exam_payload())
    seen: dict[str, set[str]] = {}
    for user, client in c.items():
        listed = await client.get("/api/exams")
        exams = listed.json()["exams"] if listed.status_code == 200 else []
        studies = (await client.get("/dicomweb/studies")).json()
        seen[user] = {s["0020000D"]["Value"][0] for s in studies}
        assert seen[user] == {e["study_instance_uid"] for e in exams} & stored, user
    assert [len(seen[u]) for u in users] == [1, 1, 1, 1, 1, 1, 2, 0]
