"""The outbox against a real MLLP receiver (python-hl7's server on a real socket):
what a signature, an addendum and a cancellation send, once each, and what a
refusal or a silent destination does."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from server.composition import core_context
from server.core.config import Settings
from server.core.models import ExamEvent, OutboxMessage
from tests.helpers import PASSWORD, exam_payload
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok


def control_ids(messages: list) -> list[str]:
    return [str(m.segment("MSH")(10)) for m in messages]


async def test_signature_sends_oru_and_mdm_once(api_for: ClientFor, settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port)
        exam, rad = await signed_exam(api_for)
        items = await settled(rad, exam["id"])
        assert sorted((i["message_type"], i["state"]) for i in items) == [
            ("MDM^T02", "acknowledged"),
            ("ORU^R01", "acknowledged"),
        ]
        await receiver.wait_for(2)
        oru, mdm = receiver.of_type("ORU"), receiver.of_type("MDM")
        assert len(oru) == 1 and len(mdm) == 1
        assert str(oru[0].segment("OBR")(25)) == "F"
        assert str(oru[0].segment("OBR")(3)(1)(1)) == exam["accession_number"]
        assert str(oru[0].segment("PID")(3)(1)(1)) == exam["patient"]["id"]
        assert str(mdm[0].segment("MSH")(9)) == "MDM^T02^MDM_T02"
        assert sorted(control_ids(receiver.received)) == sorted(i["control_id"] for i in items)
    finally:
        await receiver.stop()


async def test_addendum_sends_corrected_versions(api_for: ClientFor, settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port)
        exam, rad = await signed_exam(api_for)
        await settled(rad, exam["id"])
        await ok(
            await rad.post(
                f"/api/exams/{exam['id']}/report/addenda",
                json={"text": "Pas de thrombus visible.", "password": PASSWORD},
            ),
            201,
        )
        items = await settled(rad, exam["id"])
        assert len(items) == 4 and {i["state"] for i in items} == {"acknowledged"}
        await receiver.wait_for(4)
        first, corrected = receiver.of_type("ORU")
        assert str(first.segment("OBR")(25)) == "F"
        assert str(corrected.segment("OBR")(25)) == "C"
        assert "Pas de thrombus visible." in str(corrected)
        original, replacement = receiver.of_type("MDM")
        assert str(replacement.segment("MSH")(9)) == "MDM^T10^MDM_T02"
        # TXA-13, the parent document, is the first version's TXA-12.
        assert str(replacement.segment("TXA")(13)) == str(original.segment("TXA")(12))
        assert len(set(control_ids(receiver.received))) == 4
    finally:
        await receiver.stop()


async def test_cancellation_sends_a_cancelled_result(
    api_for: ClientFor, settings: Settings
) -> None:
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port)
        urg = await api_for("urg_a")
        exam = await ok(
            await urg.post("/api/exams", json=exam_payload()),
            201,
        )
        await ok(
            await urg.post(f"/api/exams/{exam['id']}/cancel", json={"reason": "Patient transféré"})
        )
        items = await settled(urg, exam["id"])
        assert [(i["message_type"], i["event"], i["state"]) for i in items] == [
            ("ORU^R01", "exam.cancelled", "acknowledged")
        ]
        (oru,) = await receiver.wait_for(1)
        assert str(oru.segment("OBR")(25)) == "X"
        assert str(oru.segment("ORC")(1)) == "CA"
    finally:
        await receiver.stop()


async def test_receiver_down_then_up_delivers_once(
    api_for: ClientFor, make_settings, settings: Settings
) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    await destination(settings, receiver.port, kinds="oru")
    exam, rad = await signed_exam(api_for)
    async with asyncio.timeout(20):
        while True:
            (item,) = (await ok(await rad.get(f"/api/exams/{exam['id']}/deliveries")))["deliveries"]
            if item["state"] == "retrying":
                break
            await asyncio.sleep(0.05)
    assert item["last_error"]
    # Attempts are under way: a resend would race them.
    coord = await api_for("coord")
    raced = await coord.post(f"/api/deliveries/{item['id']}/resend")
    assert raced.status_code == 409 and raced.json()["error"]["code"] == "delivery_in_flight"
    await receiver.start()
    try:
        (done,) = await settled(rad, exam["id"])
        assert done["state"] == "acknowledged" and done["attempts"] >= 2
        assert control_ids(await receiver.wait_for(1)) == [done["control_id"]]
    finally:
        await receiver.stop()


async def test_refusal_escalates_and_resend_delivers(
    api_for: ClientFor, settings: Settings
) -> None:
    receiver = await Receiver(answer="AE").start()
    try:
        await destination(settings, receiver.port, kinds="oru")
        exam, rad = await signed_exam(api_for)
        (failed,) = await settled(rad, exam["id"])
        assert failed["state"] == "failed" and failed["ack_code"] == "AE"
        async with core_context(settings) as app, app.read() as db:
            escalations = (
                await db.scalars(
                    select(ExamEvent).where(
                        ExamEvent.exam_id == exam["id"], ExamEvent.kind == "escalation.raised"
                    )
                )
            ).all()
        assert [e.body["reason"] for e in escalations] == ["delivery_refused"]
        assert escalations[0].body["notified"] == ["coordinator"]

        coord = await api_for("coord")
        listed = (await ok(await coord.get("/api/deliveries")))["deliveries"]
        assert [d["id"] for d in listed] == [failed["id"]]
        # Only coordinators resend.
        assert (await rad.post(f"/api/deliveries/{failed['id']}/resend")).status_code == 403
        receiver.answer = "AA"
        await ok(await coord.post(f"/api/deliveries/{failed['id']}/resend"))
        (done,) = await settled(rad, exam["id"])
        assert done["state"] == "acknowledged"
        assert control_ids(receiver.received) == [failed["control_id"]] * 2
        assert (await ok(await coord.get("/api/deliveries")))["deliveries"] == []
    finally:
        await receiver.stop()


async def test_other_establishment_sees_no_deliveries(
    api_for: ClientFor, settings: Settings
) -> None:
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port, kinds="oru")
        exam, rad = await signed_exam(api_for)
        await settled(rad, exam["id"])
        urg_b = await api_for("urg_b")
        assert (await urg_b.get(f"/api/exams/{exam['id']}/deliveries")).status_code == 404
        assert (await urg_b.get("/api/deliveries")).status_code == 403
    finally:
        await receiver.stop()


@pytest.mark.parametrize("kinds", ["", "oru,fax"])
async def test_bad_destination_kinds_refused(settings: Settings, accounts, kinds: str) -> None:
    from server.interfaces.outbox import DestinationError

    with pytest.raises(DestinationError):
        await destination(settings, 2575, kinds=kinds)
    async with core_context(settings) as app, app.read() as db:
        assert (await db.scalars(select(OutboxMessage))).all() == []


async def test_refused_signature_owes_nothing_and_other_sites_get_nothing(
    api_for: ClientFor, settings: Settings
) -> None:
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port, establishment="HOPB")
        urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
        exam = await exam_images_complete(urg, rad, man)
        base = f"/api/exams/{exam['id']}"
        await ok(await rad.put(f"{base}/report", json={**DRAFT, "conclusion": ""}))
        refused = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
        assert refused.status_code == 422
        await ok(await rad.put(f"{base}/report", json=DRAFT))
        await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
        # HOPA has no destination: HOPB's receives nothing of HOPA's patient.
        async with core_context(settings) as app, app.read() as db:
            assert (await db.scalars(select(OutboxMessage))).all() == []
        assert receiver.received == []
    finally:
        await receiver.stop()
