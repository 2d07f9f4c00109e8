"""Crafted input gets a precise 4xx in the one error shape, never a 500 (docs/design.md
"Crafted input"): JSON bodies, NUL in paths and queries, the STOW boundary, room frames.

Each case runs against a real server on the database of the run (SQLite or PostgreSQL,
which refuses NUL in text and so turned these into 500s).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from dicomweb.samples import instance
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import exam_payload

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
JSON = {"Content-Type": "application/json"}


def error_code(resp: httpx.Response, status: int) -> str:
    """The code of a JSON error response of ``status``; no traceback in it."""
    assert resp.status_code == status, resp.text[:300]
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    assert "Traceback" not in resp.text
    code: str = body["error"]["code"]
    return code


def stow_body(boundary: str, part: bytes) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + part + f"\r\n--{boundary}--\r\n".encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def login_body(username: str) -> str:
    """A login body whose username is raw JSON text (anything, valid or not)."""
    return '{"username": ' + username + ', "password": "x"}'


@pytest.mark.parametrize(
    ("username", "code"),
    [
        (nested(100_000), "json_too_deep"),
        (nested(65), "json_too_deep"),
        ("1" * 4301, "number_too_large"),
        ("-" + "9" * 5000, "number_too_large"),
        ("1e400", "number_too_large"),
        ("NaN", "bad_json"),
        ('"a\\u0000b"', "nul_character"),
        ('"\\ud800"', "bad_encoding"),
    ],
    ids=["deep", "depth65", "int4301", "negint", "float-inf", "nan", "nul", "surrogate"],
)
async def test_crafted_json_bodies_are_refused_before_login(
    api: httpx.AsyncClient, username: str, code: str
) -> None:
    """Unauthenticated: the login route reads the body before anything else."""
    resp = await api.post("/api/session", content=login_body(username), headers=JSON)
    assert error_code(resp, 400) == code


async def test_nul_in_a_key_and_deep_in_an_authenticated_body(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    body = exam_payload(clinical_question="AVC ?\u0000")
    resp = await urg.post("/api/exams", content=json.dumps(body), headers=JSON)
    assert error_code(resp, 400) == "nul_character"
    resp = await urg.post("/api/exams", content='{"a\\u0000": 1}', headers=JSON)
    assert error_code(resp, 400) == "nul_character"
    # The limit is on depth, not size: a body at the limit reaches validation.
    resp = await urg.post("/api/exams", content=nested(64), headers=JSON)
    assert error_code(resp, 422) == "invalid_fields"
    assert (await urg.get("/api/exams")).json()["exams"] == []


async def test_out_of_range_integer_where_the_database_has_a_column(
    api_for: ClientFor,
) -> None:
    """An id past the database's integer column is refused, not sent to SQL."""
    coord = await api_for("coord")
    shift = {
        "radiologist": 2**40,
        "role": "primary",
        "starts_at": "2030-01-01T20:00:00+01:00",
        "ends_at": "2030-01-02T08:00:00+01:00",
    }
    resp = await coord.post("/api/shifts", json=shift)
    assert error_code(resp, 422) == "invalid_fields"
    resp = await coord.delete(f"/api/shifts/{2**40}")
    assert error_code(resp, 404) == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/api/exams/%00",
        "/api/exams/a%00b/events",
        "/api/exams/%00/report",
        "/dicomweb/studies/%00/metadata",
        "/dicomweb/studies/1.2%00/series",
    ],
)
async def test_nul_in_a_path_is_refused_before_sql(client_for: ClientFor, path: str) -> None:
    rad = await client_for("rad")
    assert error_code(await rad.get(path), 400) == "nul_character"


async def test_nul_in_a_path_without_authentication(http: httpx.AsyncClient) -> None:
    assert error_code(await http.get("/%00"), 400) == "nul_character"
    assert error_code(await http.get("/index.html%00"), 400) == "nul_character"


@pytest.mark.parametrize(
    "query",
    [
        "PatientName=%00",
        "PatientID=ab%00c",
        "00100010=DUP%00*",
        "StudyInstanceUID=1.2%00",
        "includefield=%00",
    ],
)
async def test_nul_in_a_qido_query_is_400(client_for: ClientFor, query: str) -> None:
    """PS3.18 8.3.4: a query value must be a valid attribute value; NUL is none."""
    urg = await client_for("urg_a")
    resp = await urg.get(f"/dicomweb/studies?{query}")
    assert error_code(resp, 400) == "nul_character"


async def test_nul_in_an_api_query_is_400(client_for: ClientFor) -> None:
    coord = await client_for("coord")
    resp = await coord.get("/api/exams?establishment=%00")
    assert error_code(resp, 400) == "nul_character"


async def test_stow_boundary_longer_than_rfc2046_allows(client_for: ClientFor) -> None:
    """RFC 2046 5.1.1: a boundary is 1 to 70 characters."""
    man = await client_for("man_a")
    for boundary in ("b" * 5000, "b" * 71):
        body = stow_body(boundary, instance("CT_small.dcm"))
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        resp = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
        assert error_code(resp, 400) == "bad_boundary"


async def test_stow_boundary_with_characters_rfc2046_forbids(client_for: ClientFor) -> None:
    man = await client_for("man_a")
    for boundary in ("a\u00e9b", "ab ", 'a"b'):
        ctype = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        headers = {"Content-Type": ctype.encode("latin-1")}
        resp = await man.post("/dicomweb/studies", content=b"x", headers=headers)
        assert error_code(resp, 400) == "bad_boundary"


async def test_room_frames_with_crafted_json_get_error_frames(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg = await client_for("urg_a")
    exam = (await urg.post("/api/exams", json=exam_payload())).json()
    token = urg.headers["Authorization"].removeprefix("Bearer ")
    cases: list[tuple[Any, str]] = [
        ('{"type": "chat", "id": "d", "text": ' + nested(10_000) + "}", "bad_json"),
        ('{"type": "chat", "id": "i", "text": ' + "7" * 4301 + "}", "bad_json"),
        ('{"type": "chat", "id": "n", "text": "bonjour\\u0000"}', "bad_encoding"),
        ('{"type": "chat\\u0000", "id": "k", "text": "t"}', "bad_encoding"),
        ('{"type": "call.ice", "candidate": {"candidate": "\\u0000"}}', "bad_encoding"),
    ]
    async with RoomClient(live_server.ws_url, exam["id"], token, since=1) as room:
        for raw, code in cases:
            await room.send(raw)
            error = await room.next_of("error")
            assert error["code"] == code, (raw[:60], error)
        assert (await room.chat("toujours là"))["seq"] == 2


async def test_nul_in_a_room_socket_path(live_server: LiveServer, client_for: ClientFor) -> None:
    """The room's exam id comes from the path too: the handshake is refused."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    urg = await client_for("urg_a")
    headers = {"Authorization": urg.headers["Authorization"]}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{live_server.ws_url}/ws/exams/%00", additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
