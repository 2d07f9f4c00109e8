"""Start-up reconciliation of the storage with the index, on crafted directory
states: what a process killed while storing leaves behind (dicomweb/reconcile.py)."""

from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dicomweb import DicomwebConfig, Ingestor, StoredInstance
from dicomweb import storage as storage_module
from dicomweb import tables as t
from dicomweb.reconcile import INTERRUPTED, reconcile
from dicomweb.samples import ct_series
from dicomweb.storage import Storage, host_name, temp_writer
from dicomweb.testing import TokenAccess, create_engine
from dicomweb.types import Quarantined

P = {"establishment": 7}
OLD = time.time() - 7 * 3600  # older than STALE_S


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture
def ingestor(db: async_sessionmaker[AsyncSession], tmp_path: Path) -> Ingestor:
    config = DicomwebConfig(storage_root=tmp_path / "store")
    return Ingestor(config, db, TokenAccess(exam_id="exam-1", establishment=7))


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    child.wait()
    return child.pid


def temp(storage: Storage, pid: int, host: str | None = None, tag: str = "abc123") -> Path:
    path = storage.tmp / f"{pid}@{host or host_name()}~{tag}.part"
    path.write_bytes(b"DICM")
    return path


def place(storage: Storage, data: bytes) -> str:
    """A file moved into place as ``place_many`` does, with no index row."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    rel = storage.relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    path = storage.absolute(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


async def indexed_paths(db: async_sessionmaker[AsyncSession]) -> set[str]:
    async with db() as s:
        return set((await s.scalars(select(t.instances.c.path))).all())


def files_in_place(storage: Storage) -> set[str]:
    return {
        str(p.relative_to(storage.root)) for p in storage.root.glob("??/*/*/*.dcm") if p.is_file()
    }


async def test_temp_files_of_dead_writers_go_live_ones_stay(ingestor: Ingestor) -> None:
    storage = ingestor.storage
    dead = temp(storage, dead_pid())
    live = temp(storage, os.getppid())  # pytest's parent: alive, writing
    mine = temp(storage, os.getpid())
    # The same pid, before this process began: a previous server (in a container,
    # the server's pid is often the same at every start).
    before_me = temp(storage, os.getpid(), tag="before")
    os.utime(before_me, (time.time() - 60, time.time() - 60))
    elsewhere = temp(storage, 4242, host="other-host")  # cannot tell: by age only
    old_elsewhere = temp(storage, 4243, host="other-host")
    unnamed = storage.tmp / "tmpq1w2e3.part"  # written before names said who
    unnamed.write_bytes(b"x")
    old_unnamed = storage.tmp / "tmpold.part"
    old_unnamed.write_bytes(b"x")
    old_live = temp(storage, os.getppid(), tag="old")  # alive, but for 7 hours: stale
    for path in (old_elsewhere, old_unnamed, old_live):
        os.utime(path, (OLD, OLD))
    thumb_old = storage.thumbs / f"abc.{dead_pid()}.tmp"
    thumb_old.write_bytes(b"jpeg")
    os.utime(thumb_old, (OLD, OLD))
    thumb_new = storage.thumbs / f"def.{os.getpid()}.tmp"
    thumb_new.write_bytes(b"jpeg")
    done = await reconcile(storage, ingestor.db, alone=True, started=time.time() - 30)
    gone = {dead, before_me, old_elsewhere, old_unnamed, old_live, thumb_old}
    assert sorted(done.temps_deleted) == sorted(str(p.relative_to(storage.root)) for p in gone)
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in (live, mine, elsewhere, unnamed, thumb_new))
    assert sorted(done.temps_kept) == sorted(
        f"tmp/{p.name}" for p in (live, mine, elsewhere, unnamed)
    )


def test_temp_names_say_who_writes_them(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "s")
    fd, path = storage.new_temp()
    os.close(fd)
    assert temp_writer(path.name) == (os.getpid(), host_name())
    assert temp_writer("tmpabc.part") is None


async def test_unindexed_files_are_set_aside_truncated_ones_deleted(
    ingestor: Ingestor,
) -> None:
    storage = ingestor.storage
    series = list(ct_series(4, size=32))
    stored = await ingestor.store_many(series[:2], P)
    assert all(isinstance(r, StoredInstance) for r in stored)
    whole = place(storage, series[2])
    truncated = place(storage, series[3][: len(series[3]) // 2])
    not_dicom = storage.relative_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    storage.absolute(not_dicom).parent.mkdir(parents=True)
    storage.absolute(not_dicom).write_bytes(b"\0" * 300)
    before = await indexed_paths(ingestor.db)

    done = await reconcile(storage, ingestor.db, alone=True, started=time.time() + 1)

    assert done.files == 5 and done.missing == []
    assert done.quarantined == [whole]
    assert sorted(done.deleted) == sorted([truncated, not_dicom])
    # Nothing was indexed blindly; what was indexed is untouched.
    assert await indexed_paths(ingestor.db) == before == files_in_place(storage)
    # No queue here (the Access has no keep_aside): a note beside the file says what it is.
    [kept] = storage.quarantine.glob("*.dcm")
    assert kept.read_bytes() == series[2]
    note = json.loads(kept.with_suffix(".json").read_text())
    sop = pydicom.dcmread(kept).SOPInstanceUID
    assert note["was"] == whole and note["sop_uid"] == sop
    assert note["reason"] == INTERRUPTED
    assert "PatientName" not in json.dumps(note) and "CompressedSamples" not in json.dumps(note)
    # A second start-up finds nothing more to do.
    again = await reconcile(storage, ingestor.db, alone=True, started=time.time() + 1)
    assert not again.changed() and again.files == 2


async def test_recent_files_wait_while_other_processes_run(ingestor: Ingestor) -> None:
    """Another process may have just moved a file into place and be committing its
    row: with others running, a file younger than the grace period is left alone;
    alone, a file placed before this process started is not anyone's."""
    storage = ingestor.storage
    rel = place(storage, next(ct_series(1, size=32)))
    done = await reconcile(storage, ingestor.db, alone=False, started=time.time() + 1)
    assert done.left == [rel] and storage.absolute(rel).exists()
    # Placed after this process announced itself: possibly its own, being indexed.
    done = await reconcile(storage, ingestor.db, alone=True, started=time.time() - 60)
    assert done.left == [rel] and storage.absolute(rel).exists()
    done = await reconcile(storage, ingestor.db, alone=False, started=time.time(), grace_s=0)
    assert done.quarantined == [rel] and not storage.absolute(rel).exists()


async def test_rows_without_their_file_are_reported_not_removed(ingestor: Ingestor) -> None:
    storage = ingestor.storage
    stored = await ingestor.store_many(list(ct_series(3, size=32)), P)
    assert all(isinstance(r, StoredInstance) for r in stored)
    paths = sorted(await indexed_paths(ingestor.db))
    storage.absolute(paths[1]).unlink()
    done = await reconcile(storage, ingestor.db, alone=True, started=time.time())
    assert done.missing == [paths[1]] and done.files == 2
    async with ingestor.db() as s:
        assert await s.scalar(select(func.count()).select_from(t.instances)) == 3


def test_alone_sees_other_processes_not_itself(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first, second = Storage(root), Storage(root)
    assert first.alone() and second.alone()  # the same process twice: alone
    code = (
        "import sys, time; from pathlib import Path; from dicomweb.storage import Storage; "
        f"s = Storage(Path({str(root)!r})); print('ready', flush=True); sys.stdin.read()"
    )
    other = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        assert not first.alone()
    finally:
        other.communicate(timeout=10)  # closes its stdin: it exits
    assert first.alone()


def test_a_collected_storage_never_waits_for_the_lock_guard(tmp_path: Path) -> None:
    """The collector may finalise a ``Storage`` inside ``_hold`` on the same thread,
    the guard taken (seen as a hang of the whole test run): the finalizer only
    queues the release, done at the next ``_hold``."""
    old = Storage(tmp_path / "old")
    with storage_module._locks_guard:
        del old
        gc.collect()  # before: waited for the guard this thread holds, forever
        assert (tmp_path / "old").resolve() in storage_module._collected
    Storage(tmp_path / "new")
    # Released: the process no longer announces itself on the old root.
    assert (tmp_path / "old").resolve() not in storage_module._locks


async def test_what_is_set_aside_joins_the_queue(ingestor: Ingestor) -> None:
    """With a queue (the server's ``Access.keep_aside``), an instance found in place
    without its row is handed to it with its identifiers, and needs no note."""
    storage = ingestor.storage
    data = next(ct_series(1, size=32))
    rel = place(storage, data)
    queued: list[Quarantined] = []

    async def keep_aside(kept: list[Quarantined]) -> list[str]:
        queued.extend(kept)
        return [f"item-{i}" for i in range(len(kept))]

    done = await reconcile(
        storage, ingestor.db, alone=True, started=time.time() + 1, keep_aside=keep_aside
    )
    assert done.quarantined == [rel]
    [q] = queued
    ds = pydicom.dcmread(io.BytesIO(data))
    assert q.decision.reason == INTERRUPTED
    assert (q.attrs.sop_uid, q.attrs.study_uid) == (ds.SOPInstanceUID, ds.StudyInstanceUID)
    assert q.attrs.patient_id == ds.PatientID and q.size == len(data)
    assert storage.absolute(q.path).read_bytes() == data
    assert list(storage.quarantine.glob("*.json")) == []


async def test_a_queue_that_fails_leaves_a_note(ingestor: Ingestor) -> None:
    storage = ingestor.storage
    place(storage, next(ct_series(1, size=32)))

    async def keep_aside(kept: list[Quarantined]) -> list[str]:
        raise ConnectionError("database gone")

    await reconcile(
        storage, ingestor.db, alone=True, started=time.time() + 1, keep_aside=keep_aside
    )
    [kept] = storage.quarantine.glob("*.dcm")
    assert json.loads(kept.with_suffix(".json").read_text())["reason"] == INTERRUPTED
