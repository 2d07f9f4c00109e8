"""Property test of every JSON route (docs/design.md "Crafted input"): whatever body is
sent, the answer is never a 5xx and every error has the one shape.

Bodies are generated JSON (nested, numbers of any size and NaN, strings with NUL and
lone surrogates, wrong types, the route's own field names with odd values) and raw text
(deep nesting, long digit runs, broken UTF-8), sent to a live server on the run's
database. Bounded: a fixed number of examples, derandomized, no example database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.testing import LiveServer
from tests.conftest import Accounts
from tests.helpers import PASSWORD, exam_payload

FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Every character, surrogates and NUL included; JSON escapes what it must.
CHARS = st.characters(codec=None, categories=None)
TEXT = st.text(CHARS, max_size=30) | st.sampled_from(["\x00", "a\x00b", "\ud800", "", " "])
NUMBERS = st.integers() | st.integers(min_value=10**18, max_value=10**40) | st.floats()
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class JsonRoute:
    method: str
    path: str
    user: str | None
    fields: tuple[str, ...]
    valid: dict[str, Any]


def routes(exam: str, spare: str) -> list[JsonRoute]:
    e, s = f"/api/exams/{exam}", f"/api/exams/{spare}"
    shift = {
        "radiologist": "rad",
        "role": "primary",
        "starts_at": "2030-01-01T20:00:00+01:00",
        "ends_at": "2030-01-02T08:00:00+01:00",
    }
    return [
        JsonRoute("POST", "/api/session", None, ("username", "password"), {"username": "x"}),
        JsonRoute("POST", "/api/exams", "urg_a", tuple(exam_payload()), exam_payload()),
        JsonRoute("POST", f"{e}/protocol", "rad", ("protocol_id", "text"), {"text": "TDM"}),
        JsonRoute("POST", f"{s}/cancel", "urg_a", ("reason",), {"reason": "doublon"}),
        JsonRoute("PUT", f"{e}/report", "rad", ("findings", "dose", "critical"), {}),
        JsonRoute("POST", f"{e}/report/sign", "rad", ("password",), {"password": "x"}),
        JsonRoute("POST", f"{e}/report/addenda", "rad", ("text", "password"), {"text": "a"}),
        JsonRoute("POST", f"{e}/acknowledge", "urg_a", ("critical_acknowledged",), {}),
        JsonRoute("POST", "/api/shifts", "coord", ("radiologist", "kind", "note"), shift),
        JsonRoute(
            "POST",
            "/api/shift-templates",
            "coord",
            ("radiologist", "pattern", "valid_from", "start_time"),
            {"radiologist": 1, "role": "backup", "pattern": "weekend"},
        ),
    ]


def raw_bodies() -> st.SearchStrategy[bytes]:
    depth = st.integers(min_value=60, max_value=5000)
    return st.one_of(
        depth.map(lambda n: ("[" * n + "]" * n).encode()),
        depth.map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
        st.integers(min_value=19, max_value=6000).map(lambda n: b'{"text": ' + b"9" * n + b"}"),
        st.binary(max_size=64),
        st.sampled_from([b"", b"NaN", b"-Infinity", b'"\\u0000"', b'{"text": "\\udfff"}']),
    )


def bodies(route: JsonRoute) -> st.SearchStrategy[bytes]:
    """The route's valid body with some fields set to anything, any JSON, or raw text."""
    odd_fields = st.dictionaries(st.sampled_from(route.fields), VALUES, min_size=1)
    mutated = odd_fields.map(lambda odd: {**route.valid, **odd})
    as_json = (mutated | VALUES).map(lambda v: json.dumps(v).encode())
    return st.one_of(as_json, as_json, raw_bodies())


@dataclass
class Clients:
    server: LiveServer
    by_user: dict[str | None, httpx.Client]
    exam: str
    spare: str


@pytest.fixture
def clients(live_server: LiveServer, accounts: Accounts) -> Iterator[Clients]:
    made: dict[str | None, httpx.Client] = {}
    for user in (None, "urg_a", "rad", "coord"):
        client = httpx.Client(base_url=live_server.url, timeout=30)
        if user is not None:
            resp = client.post("/api/session", json={"username": user, "password": PASSWORD})
            client.headers["Authorization"] = f"Bearer {resp.json()['token']}"
        made[user] = client
    exam, spare = (made["urg_a"].post("/api/exams", json=exam_payload()).json()["id"] for _ in "ab")
    assert made["rad"].post(f"/api/exams/{exam}/accept").status_code == 200
    try:
        yield Clients(live_server, made, exam, spare)
    finally:
        for client in made.values():
            client.close()


def assert_handled(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.request.method, resp.request.url, resp.text[:300])
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


def test_json_routes_never_answer_5xx(clients: Clients) -> None:
    table = routes(clients.exam, clients.spare)

    @FUZZ
    @given(st.data())
    def check(data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(table))
        body = data.draw(bodies(route))
        client = clients.by_user[route.user]
        resp = client.request(
            route.method, route.path, content=body, headers={"Content-Type": "application/json"}
        )
        assert_handled(resp)

    check()
