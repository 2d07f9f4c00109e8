"""Patient safety: the images archived before a merge (A40), a new identifier (A47) or an
identity update (A31) are handed out with the exam's identity of now, by every path
that gives the stored instance or its metadata (docs/hl7.md "Merges and the archive",
docs/dicomweb.md "Identity on the way out"). Real MLLP, a real server over HTTP,
dicomweb-client, and pydicom reading the bytes returned."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select, text

from dicomweb import identity
from dicomweb.header import instance_attrs
from dicomweb.samples import instance, multipart, split_multipart
from dicomweb.staging import Staged, read_staged
from dicomweb.tables import studies
from dicomweb.types import StoredInstance, StoreTarget
from server.archive.service import build
from server.core.identity import SystemPrincipal
from server.core.models import Establishment, Exam
from server.patients import service as patients
from server.priors.models import HospitalPrior
from server.testing import LiveServer
from tests.conftest import BACKEND
from tests.helpers import of_exam
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
MERGED = "DUPOND^Hélène Marie"
SURVIVOR = "DUPONT^Hélène Marie"


async def accepted_exam(
    listener: Hl7Listener, client_for: ClientFor, placer: str
) -> tuple[dict[str, Any], httpx.AsyncClient, httpx.AsyncClient]:
    """An exam ordered over MLLP for IPP-OLD (DUPOND), accepted and its protocol
    acknowledged: (the exam, the radiologist, the manipulator)."""
    order = m.order(
        m.control_id(), placer, m.pid("IPP-OLD", birth_name="DUPOND", ins=None, status="PROV")
    )
    [ack] = await listener.send(order)
    assert ack_code(ack) == "AA", str(ack)
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    async with listener.app.read() as db:
        exam_id = await db.scalar(select(Exam.id).where(Exam.placer_order_number == placer))
    base = f"/api/exams/{exam_id}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    exam = (await urg.get(base)).json()
    assert exam["patient"]["id"] == "IPP-OLD"
    return exam, rad, man


async def filed_study(
    listener: Hl7Listener, client_for: ClientFor, placer: str
) -> tuple[dict[str, Any], httpx.AsyncClient, list[bytes]]:
    """:func:`accepted_exam` and a series of two images stored in it by the
    manipulator: (the exam, the radiologist, the files)."""
    exam, rad, man = await accepted_exam(listener, client_for, placer)
    series = generate_uid()
    files = [
        instance(series=series, InstanceNumber=n, **of_exam(exam))  # type: ignore[arg-type]
        for n in (1, 2)
    ]
    body, ctype = multipart(files)
    stored = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert stored.status_code == 200, stored.text
    return exam, rad, files


async def retrieved(client: httpx.AsyncClient, path: str) -> list[Dataset]:
    resp = await client.get(path, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert resp.status_code == 200, resp.text
    parts = split_multipart(resp.content, resp.headers["content-type"])
    return [dcmread(io.BytesIO(p)) for p in parts]


def original(ds: Dataset) -> tuple[Dataset, Dataset]:
    """(the last Original Attributes Sequence item, its modified attributes)."""
    item = ds.OriginalAttributesSequence[-1]
    return item, item.ModifiedAttributesSequence[0]


async def check_survivor(
    rad: httpx.AsyncClient,
    server: LiveServer,
    study: str,
    files: list[bytes],
    shown: tuple[str, str],
    was: tuple[str, str],
) -> None:
    """Every path gives ``shown`` (PatientID, PatientName) and keeps ``was`` in an
    Original Attributes item (reason CORRECT); the pixel data is the stored one."""
    sent = {(d := dcmread(io.BytesIO(f))).SOPInstanceUID: d for f in files}
    series = next(iter(sent.values())).SeriesInstanceUID
    sop = next(iter(sent))
    base = f"/dicomweb/studies/{study}"
    got = [
        *await retrieved(rad, base),
        *await retrieved(rad, f"{base}/series/{series}"),
        *await retrieved(rad, f"{base}/series/{series}/instances/{sop}"),
    ]
    assert len(got) == 2 * len(files) + 1
    for ds in got:
        assert (ds.PatientID, str(ds.PatientName)) == shown
        item, before = original(ds)
        assert item.ReasonForTheAttributeModification == "CORRECT"
        assert item.ModifyingSystem == "TELEIMAGERIE"
        for keyword, new, old in zip(("PatientID", "PatientName"), shown, was, strict=True):
            if new != old:
                assert str(before[keyword].value) == old
            else:
                assert keyword not in before
        assert ds.PixelData == sent[ds.SOPInstanceUID].PixelData
    # The metadata, by series and study, says the same.
    for path in (f"{base}/metadata", f"{base}/series/{series}/metadata"):
        resp = await rad.get(path)
        assert resp.status_code == 200, resp.text
        for meta in resp.json():
            assert meta["00100020"]["Value"] == [shown[0]]
            assert meta["00100010"]["Value"][0]["Alphabetic"] == shown[1]
            [item] = meta["04000561"]["Value"]
            assert item["04000565"]["Value"] == ["CORRECT"]  # Reason for the modification
    # WADO-URI, as a RIS link opens it.
    uri = await rad.get(
        "/dicomweb/wado",
        params={
            "requestType": "WADO",
            "studyUID": study,
            "seriesUID": series,
            "objectUID": sop,
            "contentType": "application/dicom",
        },
    )
    assert uri.status_code == 200, uri.text
    assert "no-cache" in uri.headers["cache-control"]
    ds = dcmread(io.BytesIO(uri.content))
    assert (ds.PatientID, str(ds.PatientName)) == shown
    assert ds.PixelData == sent[sop].PixelData
    # dicomweb-client, as a viewer or a hospital's system retrieves the study.
    token = rad.headers["Authorization"]

    def with_client() -> list[Dataset]:
        client = DICOMwebClient(url=f"{server.url}/dicomweb", headers={"Authorization": token})
        return list(client.retrieve_study(study))

    for ds in await asyncio.to_thread(with_client):
        assert (ds.PatientID, str(ds.PatientName)) == shown
        assert ds.PixelData == sent[ds.SOPInstanceUID].PixelData


@pytest.mark.parametrize(
    ("message", "shown", "was"),
    [
        pytest.param(
            lambda: m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD")),
            ("IPP-NEW", SURVIVOR),
            ("IPP-OLD", MERGED),
            id="A40-merge",
        ),
        pytest.param(
            lambda: m.adt(
                "A47",
                m.control_id(),
                m.pid("IPP-B", birth_name="DUPOND", ins=None, status="PROV"),
                m.mrg("IPP-OLD"),
            ),
            ("IPP-B", MERGED),
            ("IPP-OLD", MERGED),
            id="A47-new-identifier",
        ),
        pytest.param(
            lambda: m.adt("A31", m.control_id(), m.pid("IPP-OLD", ins=None, status="PROV")),
            ("IPP-OLD", SURVIVOR),
            ("IPP-OLD", MERGED),
            id="A31-update",
        ),
    ],
)
async def test_images_stored_before_are_handed_out_with_the_new_identity(
    hl7_listener: Hl7Listener,
    client_for: ClientFor,
    live_server: LiveServer,
    message: Callable[[], str],
    shown: tuple[str, str],
    was: tuple[str, str],
) -> None:
    exam, rad, files = await filed_study(hl7_listener, client_for, "CMD-M1")
    study = exam["study_instance_uid"]
    [ack] = await hl7_listener.send(message())
    assert ack_code(ack) == "AA", str(ack)
    await check_survivor(rad, live_server, study, files, shown, was)


async def test_a_merge_sent_by_another_establishment_changes_no_image(
    hl7_listener: Hl7Listener, client_for: ClientFor
) -> None:
    """CHU_B's system cannot merge HOPA's patient: refused, and the images are
    still handed out exactly as stored."""
    exam, rad, files = await filed_study(hl7_listener, client_for, "CMD-M2")
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"), facility="CHU_B")
    )
    assert ack_code(ack) != "AA", str(ack)
    study = exam["study_instance_uid"]
    resp = await rad.get(
        f"/dicomweb/studies/{study}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert resp.status_code == 200
    assert sorted(split_multipart(resp.content, resp.headers["content-type"])) == sorted(files)
    meta = (await rad.get(f"/dicomweb/studies/{study}/metadata")).json()
    assert [x["00100020"]["Value"] for x in meta] == [["IPP-OLD"], ["IPP-OLD"]]
    assert all("04000561" not in x for x in meta)


async def test_key_images_marked_after_a_merge_name_the_survivor(
    hl7_listener: Hl7Listener, client_for: ClientFor
) -> None:
    """The key-object document copies its patient from the images it references: made
    after the merge, it names the survivor and is filed into the exam."""
    exam, rad, files = await filed_study(hl7_listener, client_for, "CMD-M3")
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    marked = dcmread(io.BytesIO(files[0])).SOPInstanceUID
    resp = await rad.post(
        f"/api/exams/{exam['id']}/key-objects", json={"key_images": [{"sop_instance_uid": marked}]}
    )
    assert resp.status_code == 201, resp.text
    saved = resp.json()["key_images"]
    [ko] = await retrieved(
        rad,
        f"/dicomweb/studies/{exam['study_instance_uid']}/series/{saved['series_instance_uid']}"
        f"/instances/{saved['sop_instance_uid']}",
    )
    assert (ko.PatientID, str(ko.PatientName)) == ("IPP-NEW", SURVIVOR)


async def test_images_filed_before_a_merge_and_indexed_after_it_take_the_survivor(
    hl7_listener: Hl7Listener, client_for: ClientFor, live_server: LiveServer
) -> None:
    """A merge racing the first images of a study: they were filed under the old
    identity, the merge commits, then their study row is written. The row takes the
    survivor's identity (read under the exam's lock) and they are handed out so."""
    exam, rad, _ = await accepted_exam(hl7_listener, client_for, "CMD-M4")
    data = instance(**of_exam(exam))  # type: ignore[arg-type]
    archive = build(hl7_listener.app)
    ingestor = archive.ingestor
    staged = read_staged(ingestor.storage.write_temp([data]))
    assert isinstance(staged, Staged)
    async with hl7_listener.app.read() as db:
        establishment = await db.scalar(select(Exam.establishment_id).where(Exam.id == exam["id"]))
    bound = SystemPrincipal(exam_id=exam["id"], establishment_id=establishment)
    target = await ingestor.access.authorize_store(bound, instance_attrs(staged.header))
    assert isinstance(target, StoreTarget)  # filed: the header is the exam's patient
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    results: list[Any] = [None]
    await ingestor._place_and_index([(0, staged, target)], results)
    assert isinstance(results[0], StoredInstance), results
    found = await rad.get("/dicomweb/studies", params={"PatientID": "IPP-NEW"})
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [exam["study_instance_uid"]]
    await check_survivor(
        rad,
        live_server,
        exam["study_instance_uid"],
        [data],
        ("IPP-NEW", SURVIVOR),
        ("IPP-OLD", MERGED),
    )


async def test_a_second_correction_is_served_at_once(
    hl7_listener: Hl7Listener, client_for: ClientFor
) -> None:
    """What the server kept of the first correction is never given after the next:
    the survivor renamed by A31 right after the merge is what the next retrieve and
    metadata show."""
    exam, rad, files = await filed_study(hl7_listener, client_for, "CMD-M5")
    study = exam["study_instance_uid"]
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    path = f"/dicomweb/studies/{study}"
    assert {str(ds.PatientName) for ds in await retrieved(rad, path)} == {SURVIVOR}
    assert {
        x["00100010"]["Value"][0]["Alphabetic"] for x in (await rad.get(f"{path}/metadata")).json()
    } == {SURVIVOR}
    [ack] = await hl7_listener.send(
        m.adt("A31", m.control_id(), m.pid("IPP-NEW", birth_name="MARTIN"))
    )
    assert ack_code(ack) == "AA", str(ack)
    got = await retrieved(rad, path)
    assert {(ds.PatientID, str(ds.PatientName)) for ds in got} == {
        ("IPP-NEW", "MARTIN^Hélène Marie")
    }
    for ds in got:
        [item] = ds.OriginalAttributesSequence  # the stored values, not the first correction
        assert str(item.ModifiedAttributesSequence[0].PatientName) == MERGED
    meta = (await rad.get(f"{path}/metadata")).json()
    assert {x["00100010"]["Value"][0]["Alphabetic"] for x in meta} == {"MARTIN^Hélène Marie"}


async def test_priors_fetched_from_the_hospital_follow_the_merge(
    hl7_listener: Hl7Listener, client_for: ClientFor
) -> None:
    """A study the worker fetched from the hospital's PACS as a prior of the exam
    (indexed with no exam, the establishment's) shows the survivor after A40, marked
    corrected; another establishment's study with the same UID pattern is untouched."""
    exam, _, _ = await accepted_exam(hl7_listener, client_for, "CMD-M6")
    now = datetime.now(UTC)
    async with hl7_listener.app.db() as db:
        est = await db.scalar(select(Exam.establishment_id).where(Exam.id == exam["id"]))
        other = await db.scalar(select(Establishment.id).where(Establishment.id != est))
        uids = {est: generate_uid(), other: generate_uid()}
        for where, uid in uids.items():
            await db.execute(
                studies.insert().values(
                    study_uid=uid,
                    patient_id="IPP-OLD",
                    patient_name=MERGED,
                    patient_name_key=MERGED.upper(),
                    patient_birth_date="19690315",
                    patient_sex="F",
                    establishment_id=where,
                    created_at=0,
                )
            )
            db.add(
                HospitalPrior(
                    exam_id=exam["id"],
                    establishment_id=where,
                    patient_id="IPP-OLD",
                    study_instance_uid=uid,
                    position=1,
                    total=1,
                    status="done",
                    created_at=now,
                    updated_at=now,
                )
            )
        await db.commit()
    [ack] = await hl7_listener.send(
        m.adt("A40", m.control_id(), m.pid("IPP-NEW"), m.mrg("IPP-OLD"))
    )
    assert ack_code(ack) == "AA", str(ack)
    async with hl7_listener.app.read() as db:
        rows = {
            r.study_uid: r
            for r in await db.execute(
                select(studies.c.study_uid, *identity.COLUMNS).where(
                    studies.c.study_uid.in_(uids.values())
                )
            )
        }
    mine, theirs = rows[uids[est]], rows[uids[other]]
    assert (mine.patient_id, mine.patient_name) == ("IPP-NEW", SURVIVOR)
    assert identity.correction_of(mine) is not None
    assert (theirs.patient_id, theirs.identity_corrected_at) == ("IPP-OLD", None)


@pytest.mark.skipif(BACKEND != "postgresql", reason="row locks: SQLite has one writer")
async def test_a_merge_holding_the_exam_orders_the_first_images_after_it(
    hl7_listener: Hl7Listener, client_for: ClientFor
) -> None:
    """The merge's transaction has updated the exam and not committed yet when the
    first images of its study (filed under the old identity) are indexed: their
    index transaction waits on the exam's row, then writes the survivor's identity.
    Without the shared lock it would write the old one, after the merge's update of
    the study rows had found nothing to update."""
    exam, _, _ = await accepted_exam(hl7_listener, client_for, "CMD-M7")
    app = hl7_listener.app
    archive = build(app)
    ingestor = archive.ingestor
    staged = read_staged(ingestor.storage.write_temp([instance(**of_exam(exam))]))  # type: ignore[arg-type]
    assert isinstance(staged, Staged)
    async with app.read() as db:
        est = await db.scalar(select(Exam.establishment_id).where(Exam.id == exam["id"]))
    assert est is not None
    bound = SystemPrincipal(exam_id=exam["id"], establishment_id=est)
    target = await ingestor.access.authorize_store(bound, instance_attrs(staged.header))
    assert isinstance(target, StoreTarget)
    now = datetime.now(UTC)
    traits = patients.check(
        patients.Traits(
            ipp="IPP-NEW",
            birth_name="DUPONT",
            first_names="Hélène Marie",
            sex="F",
            birth_date=date(1969, 3, 15),
        ),
        now.date(),
    )
    results: list[Any] = [None]
    async with app.db() as merge_tx:
        survivor, _, _ = await patients.upsert(merge_tx, est, traits, now)
        await patients.merge(merge_tx, est, survivor, "IPP-OLD", now)
        task = asyncio.create_task(ingestor._place_and_index([(0, staged, target)], results))
        waiting = 0
        for _ in range(2000):  # until the index waits on a lock, or is done without
            if task.done():
                break
            async with app.read() as db:
                waiting = int(
                    await db.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                            " 'Lock' AND datname = current_database()"
                        )
                    )
                    or 0
                )
            if waiting:
                break
            await asyncio.sleep(0.01)
        await merge_tx.commit()
    await task
    assert isinstance(results[0], StoredInstance), results
    async with app.read() as db:
        row = (
            await db.execute(
                select(*identity.COLUMNS).where(studies.c.study_uid == exam["study_instance_uid"])
            )
        ).one()
    assert (row.patient_id, row.patient_name) == ("IPP-NEW", SURVIVOR)
    assert identity.correction_of(row) is not None
