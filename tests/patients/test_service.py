"""The identity rules as values (docs/patients.md): the INS and its key, the
status a qualified identity needs, the normalised traits; then the search and the
link of a form's request to a received identity, over the real database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

import httpx
import pytest

from server.composition import core_context
from server.core.config import Settings
from server.core.models import Establishment
from server.patients import service as patients
from server.patients.service import IdentityStatus, PatientError, Traits
from tests.conftest import Accounts
from tests.helpers import exam_payload

TODAY = date(2026, 12, 6)
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def traits(**changes: object) -> Traits:
    base = Traits(
        ipp=" IPP1 ",
        birth_name="  de la  Fontaine ",
        first_names="Jean  Pierre",
        sex="M",
        birth_date=date(1955, 7, 1),
        status=IdentityStatus.QUALIFIED,
        ins="155077505678951",
        ins_oid=patients.INS_NIR,
        birthplace_code="75056",
    )
    return Traits(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_traits_are_normalised() -> None:
    checked = patients.check(traits(), TODAY)
    assert (checked.ipp, checked.birth_name, checked.first_names) == (
        "IPP1",
        "DE LA FONTAINE",
        "Jean Pierre",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ins": "155077505678950"}, "ins"),  # wrong key
        ({"ins": "15507750567895"}, "ins"),  # 14 characters
        ({"ins_oid": "1.2.3"}, "ins_oid"),
        ({"ins": None}, "ins"),  # qualified without its INS
        ({"birth_date": date(2027, 1, 1)}, "birth_date"),
        ({"sex": "X"}, "sex"),
        ({"birth_name": "  "}, "birth_name"),
        ({"birthplace_code": "7505"}, "birthplace_code"),
    ],
)
def test_wrong_traits_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(PatientError) as info:
        patients.check(traits(**changes), TODAY)
    assert info.value.field == field


def test_nia_test_oid_and_corsica() -> None:
    corsica = "155072A123456"
    key = 97 - int(corsica.replace("2A", "19")) % 97
    ok = patients.check(traits(ins=f"{corsica}{key:02d}", ins_oid=patients.INS_NIA_TEST), TODAY)
    assert ok.ins_oid == patients.INS_NIA_TEST
    assert patients.nir_key_ok("15507X505678951") is False


def test_a_provisional_identity_needs_no_ins() -> None:
    checked = patients.check(traits(ins=None, status=IdentityStatus.PROVISIONAL), TODAY)
    assert checked.ins is None and checked.ins_oid is None


async def _est(db: object, code: str) -> int:
    from sqlalchemy import select

    est_id = await db.scalar(select(Establishment.id).where(Establishment.code == code))  # type: ignore[attr-defined]
    assert est_id is not None
    return int(est_id)


async def test_upsert_search_and_merge(settings: Settings, accounts: Accounts) -> None:
    async with core_context(settings) as app, app.db() as db:
        a, b = await _est(db, "HOPA"), await _est(db, "HOPB")
        one = patients.check(traits(), TODAY)
        row, outcome, _ = await patients.upsert(db, a, one, NOW)
        assert outcome == "created"
        assert (await patients.upsert(db, a, one, NOW))[1] == "unchanged"
        other = patients.check(
            traits(ipp="IPP2", ins=None, status=IdentityStatus.PROVISIONAL, birth_name="FONTAINE"),
            TODAY,
        )
        second, _, _ = await patients.upsert(db, a, other, NOW)
        await patients.upsert(db, b, one, NOW)
        await db.commit()
        found = await patients.search(db, a, q="de la")
        assert [r.ipp for r in found] == ["IPP1"]
        assert [r.ipp for r in await patients.search(db, a, q="155077505678951")] == ["IPP1"]
        assert [r.ipp for r in await patients.search(db, a, birth_date=date(1955, 7, 1))] == [
            "IPP1",
            "IPP2",
        ]
        assert await patients.search(db, a, q="100%") == []
        merged, moved = await patients.merge(db, a, row, "IPP2", NOW)
        assert merged.merged_into_id == row.id and moved == []
        assert [r.ipp for r in await patients.search(db, a, q="FONTAINE")] == []
        assert (await patients.surviving(db, second)).id == row.id
        with pytest.raises(PatientError):
            await patients.merge(db, a, row, "IPP1", NOW)


async def test_the_form_links_a_received_identity(
    settings: Settings, accounts: Accounts, api_for: ApiFor
) -> None:
    async with core_context(settings) as app, app.db() as db:
        a, b = await _est(db, "HOPA"), await _est(db, "HOPB")
        row, _, _ = await patients.upsert(db, a, patients.check(traits(), TODAY), NOW)
        theirs, _, _ = await patients.upsert(db, b, patients.check(traits(ipp="B1"), TODAY), NOW)
        await db.commit()
        mine, other = row.id, theirs.id
    urg = await api_for("urg_a")
    payload = exam_payload()
    payload["patient"] = {**payload["patient"], "identity_id": mine}
    resp = await urg.post("/api/exams", json=payload)
    assert resp.status_code == 201, resp.text
    patient = resp.json()["patient"]
    assert (patient["id"], patient["name"], patient["sex"]) == (
        "IPP1",
        "DE LA FONTAINE^Jean Pierre",
        "M",
    )
    assert patient["identity"]["status"] == "qualified"
    payload["patient"] = {**payload["patient"], "identity_id": other}
    resp = await urg.post("/api/exams", json=payload)
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "patient.identity_id"
