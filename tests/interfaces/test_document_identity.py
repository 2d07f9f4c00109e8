"""An exam linked to an identity the hospital sent is named by that identity in what
goes out (docs/hl7.md "Outbound", docs/patients.md): the ORU's PID and the FHIR
Patient carry the strict traits and, the identity being qualified, the INS."""

from __future__ import annotations

from sqlalchemy import select

from server.composition import core_context
from server.core.config import Settings
from server.core.models import Establishment, OutboxMessage
from server.patients import service as patients
from tests.conftest import Accounts
from tests.helpers import PASSWORD, exam_payload
from tests.interfaces.helpers import destination
from tests.patients.test_service import NOW, TODAY, traits
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok

INS = "155077505678951"


async def test_a_qualified_identity_names_the_patient_of_the_oru_and_fhir(
    settings: Settings, accounts: Accounts, api_for: ClientFor
) -> None:
    async with core_context(settings) as app, app.db() as db:
        est = await db.scalar(select(Establishment.id).where(Establishment.code == "HOPA"))
        assert est is not None
        row, _, _ = await patients.upsert(db, est, patients.check(traits(), TODAY), NOW)
        await db.commit()
        identity_id = row.id
    # Port 9 (discard) is never dialled: the message is read from the outbox row.
    await destination(settings, 9, kinds="oru")
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    patient = {**exam_payload()["patient"], "identity_id": identity_id}
    exam = await exam_images_complete(urg, rad, man, patient=patient)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))

    async with core_context(settings) as app, app.read() as db:
        payload = await db.scalar(
            select(OutboxMessage.payload).where(OutboxMessage.exam_id == exam["id"])
        )
    assert payload is not None
    pid = next(seg for seg in payload.split("\r") if seg.startswith("PID|"))
    fields = pid.split("|")
    assert fields[3].split("~") == [
        "IPP1^^^HOPA^PI",
        f"{INS}^^^ASIP-SANTE-INS-NIR&{patients.INS_NIR}&ISO^INS",
    ]
    assert fields[5] == "DE LA FONTAINE^Jean^^^^^L"
    assert (fields[7], fields[8]) == ("19550701", "M")

    found = await ok(await urg.get("/fhir/Patient", params={"identifier": "IPP1"}))
    (entry,) = found["entry"]
    systems = {i["system"]: i["value"] for i in entry["resource"]["identifier"]}
    assert systems[f"urn:oid:{patients.INS_NIR}"] == INS
