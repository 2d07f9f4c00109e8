"""The header reader process (dicomweb/staging.py): same answers as reading in
the server's process, and one bad turn of the child costs one instance only."""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from dicomweb import DicomwebConfig, Failure, Ingestor, StoredInstance
from dicomweb import ingest as ingest_module
from dicomweb.samples import ct_series, instance, sample_path
from dicomweb.staging import HeaderReader, Staged, read_staged
from dicomweb.storage import Storage
from dicomweb.testing import TokenAccess, create_engine
from dicomweb.types import CANNOT_UNDERSTAND, PROCESSING_FAILURE

SAMPLES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "emri_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "rtplan.dcm",
]


@pytest.fixture
def reader() -> Iterator[HeaderReader]:
    r = HeaderReader()
    yield r
    r.stop()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache: mincore(2) of a mapping never touched."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) * mmap.PAGESIZE


def test_a_staged_file_stays_in_the_page_cache(reader: HeaderReader, tmp_path: Path) -> None:
    # Its first read (a radiologist's, seconds later) finds it there: Storage.placed
    # decides when it leaves.
    data = next(iter(ct_series(1, size=256)))
    for read in (read_staged, reader.read):
        temp = tmp_path / f"{len(list(tmp_path.iterdir()))}.dcm"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        assert isinstance(read(temp), Staged)
        assert resident_bytes(temp) >= len(data) - mmap.PAGESIZE, read


def test_only_the_newest_placed_files_stay_in_the_page_cache(tmp_path: Path) -> None:
    parts = list(ct_series(4, size=256))
    storage = Storage(tmp_path / "root", keep_cached=int(2.5 * len(parts[0])))
    finals = []
    for i, data in enumerate(parts):
        temp = storage.write_temp([data])
        Storage.sync(temp)
        [final] = storage.place_many([(temp, storage.relative_path("1.2", "1.2.3", f"1.{i}"))])
        assert isinstance(final, Path)
        finals.append(final)
    assert [resident_bytes(f) for f in finals[:2]] == [0, 0]
    assert all(resident_bytes(f) >= len(parts[0]) - mmap.PAGESIZE for f in finals[2:])
    assert [f.read_bytes() for f in finals] == parts  # dropped from the cache, not the disk
    none = Storage(tmp_path / "other", keep_cached=0)
    temp = none.write_temp([parts[0]])
    Storage.sync(temp)
    [final] = none.place_many([(temp, none.relative_path("1.2", "1.2.3", "1.9"))])
    assert isinstance(final, Path) and resident_bytes(final) == 0


def test_the_child_answers_as_the_server_process_would(
    reader: HeaderReader, tmp_path: Path
) -> None:
    cases = [(n, sample_path(n).read_bytes()) for n in SAMPLES]
    ct = instance("CT_small.dcm")
    cases += [("truncated", ct[:300]), ("not-dicom", b"%PDF-1.7 " * 100), ("empty", b"")]
    for name, data in cases:
        here = read_staged(write(tmp_path, f"{name}.here", data))
        there = reader.read(write(tmp_path, f"{name}.there", data))
        assert type(there) is type(here), name
        if isinstance(here, Staged):
            assert isinstance(there, Staged)
            assert (there.size, there.header, there.metadata) == (
                here.size,
                here.header,
                here.metadata,
            ), name
            assert there.temp == tmp_path / f"{name}.there" and there.temp.exists()
        else:
            assert there == here, name
            assert not (tmp_path / f"{name}.there").exists()  # a failure leaves no file
    assert reader.proc is not None and reader.proc.poll() is None  # one child for them all


def test_a_killed_child_is_started_again(reader: HeaderReader, tmp_path: Path) -> None:
    assert isinstance(reader.read(write(tmp_path, "a", instance())), Staged)
    assert reader.proc is not None
    first = reader.proc.pid
    os.kill(first, signal.SIGKILL)
    reader.proc.wait()
    assert isinstance(reader.read(write(tmp_path, "b", instance())), Staged)
    assert reader.proc is not None and reader.proc.pid != first


def test_a_stuck_child_fails_that_instance_alone(reader: HeaderReader, tmp_path: Path) -> None:
    reader.timeout = 0.3
    assert reader.start() and reader.proc is not None
    stuck = reader.proc
    os.kill(stuck.pid, signal.SIGSTOP)
    result = reader.read(write(tmp_path, "a", instance()))
    assert isinstance(result, Failure) and result.reason == PROCESSING_FAILURE
    assert "no answer within" in result.message
    assert not (tmp_path / "a").exists()
    assert stuck.returncode is not None  # killed, not left stopped
    assert isinstance(reader.read(write(tmp_path, "b", instance())), Staged)


def test_a_child_dying_on_a_file_fails_that_instance_alone(
    reader: HeaderReader, tmp_path: Path
) -> None:
    assert reader.start() and reader.proc is not None
    dying = reader.proc
    os.kill(dying.pid, signal.SIGSTOP)  # it takes the path, then dies before answering
    threading.Timer(0.2, os.kill, (dying.pid, signal.SIGKILL)).start()
    result = reader.read(write(tmp_path, "a", instance()))
    assert isinstance(result, Failure) and result.reason == PROCESSING_FAILURE
    assert "the process stopped" in result.message
    assert not (tmp_path / "a").exists()
    assert isinstance(reader.read(write(tmp_path, "b", instance())), Staged)


def test_a_child_answering_garbage_fails_that_instance_alone(
    reader: HeaderReader, tmp_path: Path
) -> None:
    reader.command = [
        sys.executable,
        "-c",
        "import os, sys, time; os.write(1, b'ready\\n'); sys.stdin.buffer.read(4); "
        "os.write(1, b'\\x05\\x00\\x00\\x00junk!'); time.sleep(60)",
    ]
    result = reader.read(write(tmp_path, "a", instance()))
    assert isinstance(result, Failure) and result.reason == PROCESSING_FAILURE
    assert "unreadable answer" in result.message
    assert not (tmp_path / "a").exists() and reader.proc is None  # that child is gone


def test_without_a_child_headers_are_read_in_process(
    reader: HeaderReader, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader.command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with caplog.at_level(logging.WARNING, logger="dicomweb.staging"):
        first = reader.read(write(tmp_path, "a", instance()))
        second = reader.read(write(tmp_path, "b", b"not dicom" * 30))
    assert isinstance(first, Staged)
    assert isinstance(second, Failure) and second.reason == CANNOT_UNDERSTAND
    assert sum("cannot start" in r.message for r in caplog.records) == 1  # not once a file
    assert reader.proc is None
    reader.command = HeaderReader().command
    reader.retry_after = 0.0
    assert isinstance(reader.read(write(tmp_path, "c", instance())), Staged)
    assert reader.proc is not None and reader.proc.poll() is None


async def test_ingest_goes_on_when_its_reader_processes_are_killed(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    config = DicomwebConfig(storage_root=tmp_path / "store")
    ingestor = Ingestor(config, async_sessionmaker(engine), TokenAccess(establishment=7))
    principal = {"establishment": 7}
    try:
        ingest_module._HEADERS.start()
        assert isinstance(await ingestor.store(instance(), principal), StoredInstance)
        children = [r.proc for r in ingest_module._HEADERS.all]
        assert all(children)  # the ingest path reads headers in its children
        for child in children:
            assert child is not None
            child.kill()
            child.wait()
        stored = await ingestor.store_many([instance(), instance("MR_small.dcm")], principal)
        assert all(isinstance(s, StoredInstance) for s in stored)
        ingest_module._HEADERS.start()  # those the two reads did not use start again too
        again = [r.proc for r in ingest_module._HEADERS.all]
        assert all(p is not None and p.poll() is None for p in again)
        assert not {p.pid for p in again if p} & {c.pid for c in children if c}
    finally:
        await engine.dispose()


def test_only_a_serving_process_starts_the_readers(tmp_path: Path) -> None:
    """Building an Ingestor (every CLI command does) starts no child; warm_up does."""
    script = f"""
import asyncio
from pathlib import Path
from dicomweb import DicomwebConfig, Ingestor
from dicomweb import ingest
from dicomweb.testing import TokenAccess
i = Ingestor(DicomwebConfig(storage_root=Path({str(tmp_path)!r})), None, TokenAccess())
ingest._READ.submit(lambda: None).result()
print([r.proc is not None for r in ingest._HEADERS.all])
i.warm_up().result()
print([r.proc is not None and r.proc.poll() is None for r in ingest._HEADERS.all])
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[:2] == ["[False, False]", "[True, True]"]
