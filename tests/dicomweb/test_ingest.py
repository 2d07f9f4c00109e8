"""The ingest path used by STOW-RS and, later, C-STORE: ``Ingestor`` directly."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import DicomwebConfig, Failure, Ingestor, StoredInstance
from dicomweb import tables as t
from dicomweb.ingest import Decisions
from dicomweb.samples import ct_series, instance, sample_path
from dicomweb.storage import Storage
from dicomweb.testing import RecordingHooks, TokenAccess, create_engine

P = {"establishment": 7}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def ingestor(
    db: async_sessionmaker[AsyncSession], tmp_path: Path, hooks: RecordingHooks
) -> Ingestor:
    config = DicomwebConfig(storage_root=tmp_path / "store")
    return Ingestor(config, db, TokenAccess(exam_id="exam-1", establishment=7), hooks)


async def count(db: async_sessionmaker[AsyncSession], table: object) -> int:
    async with db() as s:
        return int((await s.execute(select(func.count()).select_from(table))).scalar_one())


async def test_store_from_path_and_bytes(
    ingestor: Ingestor, hooks: RecordingHooks, db: async_sessionmaker[AsyncSession]
) -> None:
    src = sample_path("CT_small.dcm")
    first = await ingestor.store(src, P)
    assert isinstance(first, StoredInstance) and src.exists()  # copied, not moved
    assert first.exam_id == "exam-1" and first.establishment_id == 7
    second = await ingestor.store(instance("MR_small.dcm"), P)
    assert isinstance(second, StoredInstance)
    assert [s.sop_uid for _, s in hooks.stored] == [first.sop_uid, second.sop_uid]
    assert await count(db, t.instances) == 2
    async with db() as s:
        row = (
            await s.execute(select(t.studies).where(t.studies.c.study_uid == first.study_uid))
        ).one()
    assert row.exam_id == "exam-1" and row.establishment_id == 7 and row.num_instances == 1


async def test_series_counts_and_batch(
    ingestor: Ingestor, hooks: RecordingHooks, db: async_sessionmaker[AsyncSession]
) -> None:
    slices = list(ct_series(5, size=32))
    results = await ingestor.store_many(slices[:3] + [slices[0]], P)
    assert [r.series_instance_count for r in results] == [1, 2, 3, 1]  # type: ignore[union-attr]
    assert [r.duplicate for r in results] == [False, False, False, True]  # type: ignore[union-attr]
    more = await ingestor.store_many(slices[3:], P)
    assert [r.series_instance_count for r in more] == [4, 5]  # type: ignore[union-attr]
    assert len(hooks.stored) == 5
    async with db() as s:
        study = (await s.execute(select(t.studies))).one()
        series = (await s.execute(select(t.series))).one()
    assert (study.num_series, study.num_instances, series.num_instances) == (1, 5, 5)


async def test_failure_leaves_nothing(
    ingestor: Ingestor, tmp_path: Path, db: async_sessionmaker[AsyncSession]
) -> None:
    results = await ingestor.store_many([b"junk", instance()[:3000]], P)
    assert all(isinstance(r, Failure) and r.reason in (0xC000, 0xA900) for r in results)
    store = tmp_path / "store"
    assert list(store.rglob("*.dcm")) == [] and os.listdir(store / "tmp") == []
    assert await count(db, t.instances) == 0 and await count(db, t.studies) == 0


async def test_study_of_another_exam_is_refused(
    db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    config = DicomwebConfig(storage_root=tmp_path / "s")
    a = Ingestor(config, db, TokenAccess(exam_id="A"))
    b = Ingestor(config, db, TokenAccess(exam_id="B"))
    study = "1.2.826.0.1.3680043.8.498.1"
    assert isinstance(await a.store(instance(study=study), {"establishment": None}), StoredInstance)
    refused = await b.store(instance(study=study), {"establishment": None})
    assert isinstance(refused, Failure) and refused.reason == 0x0124
    assert len(list((tmp_path / "s").rglob("*.dcm"))) == 1


def test_paths_are_hashed_inside_root(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    rel = storage.relative_path("../../etc", "/abs", "..")
    assert ".." not in rel and not rel.startswith("/")
    assert storage.absolute(rel).is_relative_to(tmp_path.resolve())
    with pytest.raises(ValueError):
        storage.absolute("../outside")


async def test_concurrent_batches_of_one_new_study(
    ingestor: Ingestor, hooks: RecordingHooks, db: async_sessionmaker[AsyncSession]
) -> None:
    """Two associations sending the same new study at once (a race on PostgreSQL):
    every instance is stored once, with one study and one series row."""
    import asyncio

    slices = list(ct_series(8, size=32))
    first, second = await asyncio.gather(
        ingestor.store_many(slices[:5], P), ingestor.store_many(slices[3:], P)
    )
    assert all(isinstance(r, StoredInstance) for r in first + second)
    assert await count(db, t.instances) == 8
    assert await count(db, t.studies) == 1 and await count(db, t.series) == 1
    async with db() as s:
        series = (await s.execute(select(t.series))).one()
    assert series.num_instances == 8
    assert len(hooks.stored) == 8


def test_write_temp_joins_chunks_on_disk(tmp_path: Path) -> None:
    """More chunks than one writev takes (IOV_MAX), empty ones among them."""
    storage = Storage(tmp_path)
    data = os.urandom(300_000)
    chunks = [memoryview(data)[i : i + 97] for i in range(0, len(data), 97)]
    chunks[5:5] = [b"", memoryview(b"")]
    assert len(chunks) > 2 * 1024
    temp = storage.write_temp(chunks)
    assert temp.parent == storage.tmp and temp.read_bytes() == data


def test_write_temp_resumes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short writev (a signal, a full disk about to fail) goes on where it stopped."""
    real = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:
        return real(fd, [memoryview(buffers[0])[:1000]])  # never more than 1000 bytes

    monkeypatch.setattr(os, "writev", short)
    data = os.urandom(25_000)
    temp = Storage(tmp_path).write_temp([data[:7000], data[7000:7001], data[7001:]])
    assert temp.read_bytes() == data


async def test_cancelled_staging_leaves_no_file(ingestor: Ingestor, tmp_path: Path) -> None:
    import asyncio

    staging = [ingestor.stage_soon(s) for s in ct_series(4, size=64)]
    for s in staging:
        s.cancel()
    tmp = tmp_path / "store" / "tmp"
    for _ in range(200):  # the threads finish their work, then drop it
        await asyncio.sleep(0.01)
        if not os.listdir(tmp):
            break
    assert os.listdir(tmp) == []
    assert list((tmp_path / "store").rglob("*.dcm")) == []


class GatedAccess(TokenAccess):
    """Holds ``authorize_store`` until ``gate`` is set."""

    def __init__(self) -> None:
        import asyncio

        super().__init__(exam_id="exam-1", establishment=7)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def authorize_store(self, principal, attrs):  # type: ignore[no-untyped-def]
        self.waiting.set()
        await self.gate.wait()
        return await super().authorize_store(principal, attrs)


async def test_a_batch_is_stored_whole_when_its_caller_is_cancelled(
    db: async_sessionmaker[AsyncSession], tmp_path: Path, hooks: RecordingHooks
) -> None:
    """The client of a STOW goes away mid-batch: the batch still ends with every
    file placed and indexed (or none), never a file without its row."""
    import asyncio

    access = GatedAccess()
    ingestor = Ingestor(DicomwebConfig(storage_root=tmp_path / "store"), db, access, hooks)
    staged = await asyncio.gather(*(ingestor.stage_soon(s) for s in ct_series(3, size=64)))
    caller = asyncio.create_task(ingestor.store_staged(staged, P))
    await access.waiting.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    access.gate.set()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(hooks.stored) == 3:
            break
    assert await count(db, t.instances) == 3
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 3
    assert os.listdir(tmp_path / "store" / "tmp") == []


class CountingAccess(TokenAccess):
    def __init__(self, keyed: bool) -> None:
        super().__init__(exam_id="exam-1", establishment=7)
        self.calls = 0
        if not keyed:
            self.store_key = lambda _principal, _attrs: None  # type: ignore[method-assign]

    async def authorize_store(self, principal, attrs):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await super().authorize_store(principal, attrs)


@pytest.mark.parametrize("keyed", [True, False])
async def test_a_series_is_authorised_once_per_batch(
    db: async_sessionmaker[AsyncSession], tmp_path: Path, keyed: bool
) -> None:
    """With ``Access.store_key`` the slices of a batch that share a key share one
    ``authorize_store`` (the server's is an SQL query); without, one per slice."""
    access = CountingAccess(keyed)
    ingestor = Ingestor(DicomwebConfig(storage_root=tmp_path / "store"), db, access)
    slices = list(ct_series(6, size=32))
    other = instance(PatientID="SOMEONE-ELSE")
    results = await ingestor.store_many([*slices, other], P)
    assert all(isinstance(r, StoredInstance) for r in results)
    assert access.calls == (2 if keyed else 7)


async def test_a_refusal_is_shared_by_its_key_only(
    db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    access = TokenAccess(exam_id="exam-1", establishment=7, refuse_patient="NOBODY")
    ingestor = Ingestor(DicomwebConfig(storage_root=tmp_path / "store"), db, access)
    refused = [instance(PatientID="NOBODY") for _ in range(2)]
    results = await ingestor.store_many([*refused, instance(PatientID="ALLOWED")], P)
    assert [type(r) for r in results] == [Failure, Failure, StoredInstance]


async def test_an_item_that_cannot_be_staged_fails_alone(
    ingestor: Ingestor, tmp_path: Path
) -> None:
    """Not bytes, chunks or a path (a caller's bug): that item fails with 0x0110,
    the others are stored, no temp file stays."""
    results = await ingestor.store_many([instance(), 12345, instance()], P)  # type: ignore[list-item]
    assert isinstance(results[0], StoredInstance) and isinstance(results[2], StoredInstance)
    assert isinstance(results[1], Failure) and results[1].reason == 0x0110
    assert os.listdir(tmp_path / "store" / "tmp") == []


def test_place_many_moves_what_it_can(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    good = storage.write_temp([b"DICM"])
    gone = storage.tmp / "never-written.part"
    a = storage.relative_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    b = storage.relative_path("1.2.3", "1.2.3.4", "1.2.3.4.6")
    placed = storage.place_many([(good, a), (gone, b)])
    assert placed[0] == storage.absolute(a) and placed[0].read_bytes() == b"DICM"
    assert isinstance(placed[1], OSError) and not storage.absolute(b).exists()
    assert not good.exists()


async def test_decisions_kept_by_the_caller_span_calls_until_they_age(
    db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """``Decisions`` (a DICOM association's) carries ``authorize_store``'s answer
    from one single-instance call to the next for the same key; an answer older
    than ``max_age_s`` is asked again; without it every call asks."""
    access = CountingAccess(True)
    ingestor = Ingestor(DicomwebConfig(storage_root=tmp_path / "store"), db, access)
    slices = list(ct_series(6, size=32))
    kept = Decisions()
    for data in slices[:3]:
        assert isinstance(await ingestor.store(data, P, decisions=kept), StoredInstance)
    assert access.calls == 1
    other = await ingestor.store(instance(PatientID="SOMEONE-ELSE"), P, decisions=kept)
    assert isinstance(other, StoredInstance) and access.calls == 2
    stale = Decisions(max_age_s=-1.0)  # every answer already too old
    for data in slices[3:5]:
        assert isinstance(await ingestor.store(data, P, decisions=stale), StoredInstance)
    assert access.calls == 4
    assert isinstance(await ingestor.store(slices[5], P), StoredInstance)
    assert access.calls == 5


async def test_a_uid_told_in_advance_is_looked_up_while_staging(
    ingestor: Ingestor, db: async_sessionmaker[AsyncSession]
) -> None:
    """``sop_uid`` (a C-STORE's): a repeat is still a duplicate, a new instance
    still stored; a header naming another UID than the one told is checked on
    its own UID, so a stored instance sent under a wrong UID is no new row."""
    first = instance()
    uid = str(dcmread(io.BytesIO(first)).SOPInstanceUID)
    stored = await ingestor.store(first, P, sop_uid=uid)
    assert isinstance(stored, StoredInstance) and not stored.duplicate
    again = await ingestor.store(first, P, sop_uid=uid)
    assert isinstance(again, StoredInstance) and again.duplicate
    told_wrong = await ingestor.store(first, P, sop_uid="1.2.3.4")
    assert isinstance(told_wrong, StoredInstance) and told_wrong.duplicate
    assert await count(db, t.instances) == 1
    broken = await ingestor.store(b"not DICOM", P, sop_uid="1.2.3.5")
    assert isinstance(broken, Failure)
