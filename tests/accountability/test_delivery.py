"""The exam's record carried by the report's ORU when the establishment asks for it,
against a real MLLP receiver (docs/accountability.md "With the report")."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pypdf
import pytest
from sqlalchemy import select

from server.accounts.service import AccountError, set_record_with_report
from server.composition import core_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.interfaces.hl7_out import RECORD
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import ClientFor


async def _record_with_report(settings: Settings, code: str, on: bool) -> None:
    async with core_context(settings) as app, app.db() as db:
        await set_record_with_report(db, code, on)
        await db.commit()


def _records(oru) -> list[bytes]:  # type: ignore[no-untyped-def]
    out = []
    for obx in oru.segments("OBX"):
        if str(obx(3)(1)(1)) == RECORD[0]:
            out.append(base64.b64decode(str(obx(5)(1)(5))))
    return out


async def test_the_oru_carries_the_record_when_asked(
    api_for: ClientFor, settings: Settings
) -> None:
    await _record_with_report(settings, "hopa", True)
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port)
        exam, rad = await signed_exam(api_for)
        await settled(rad, exam["id"])
        await receiver.wait_for(2)
        (oru,) = receiver.of_type("ORU")
        (pdf,) = _records(oru)
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        facts = json.loads(reader.attachments["record.json"][0])
        assert facts["exam"]["id"] == exam["id"]
        assert [e["kind"] for e in facts["events"]][-1] == "report.signed"
        # The MDM carries its CDA only.
        (mdm,) = receiver.of_type("MDM")
        assert _records(mdm) == []
    finally:
        await receiver.stop()
    async with core_context(settings) as app, app.db() as db:
        rows = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "record.delivered"))
        ).all()
    assert [(r.exam_id, r.detail["sha256"]) for r in rows] == [
        (exam["id"], hashlib.sha256(pdf).hexdigest())
    ]


async def test_no_record_unless_asked(api_for: ClientFor, settings: Settings) -> None:
    await _record_with_report(settings, "HOPA", False)
    receiver = await Receiver().start()
    try:
        await destination(settings, receiver.port)
        exam, rad = await signed_exam(api_for)
        await settled(rad, exam["id"])
        await receiver.wait_for(2)
        (oru,) = receiver.of_type("ORU")
        assert _records(oru) == []
    finally:
        await receiver.stop()


async def test_unknown_establishment_refused(settings: Settings, accounts: object) -> None:
    with pytest.raises(AccountError, match="no establishment NOPE"):
        await _record_with_report(settings, "nope", True)
