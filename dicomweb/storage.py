"""Where the Part-10 bytes live on disk, written atomically and named so that no
UID can steer a path outside the storage root."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

#: iovecs per ``writev`` call (Linux's IOV_MAX)
IOV_MAX = 1024
Buffer = bytes | bytearray | memoryview
#: A temp file's name says who writes it: ``<pid>@<host>~<random>.part``, so that the
#: start-up reconciliation (dicomweb/reconcile.py) can tell a file a live process is
#: writing from one a killed process left behind.
_TEMP_NAME = re.compile(r"^(\d+)@([A-Za-z0-9.-]+)~[^/]*\.part$")


def host_name() -> str:
    """This machine's name as it goes into temp file names (``_TEMP_NAME``)."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"


def temp_writer(name: str) -> tuple[int, str] | None:
    """(pid, host) of the process that created temp file ``name``; None for a
    name that does not say (written before names carried it)."""
    m = _TEMP_NAME.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


#: Every process using a storage root holds a shared POSIX lock on this file for as
#: long as it has a ``Storage`` of it: the start-up reconciliation asks whether any
#: other process does (``Storage.alone``). POSIX locks belong to the process, so the
#: process's own lock never stands in its way; one descriptor per root and process,
#: closed with the last ``Storage`` of that root (closing any descriptor of the file
#: would drop the process's lock).
LOCK_NAME = ".archive-processes.lock"
_locks: dict[Path, list[int]] = {}  # root -> [descriptor, Storage objects using it]
_locks_guard = threading.Lock()
#: Roots whose ``Storage`` was collected, released at the next ``_hold``. A
#: finalizer runs wherever the collector happens to run, possibly inside ``_hold``
#: on the same thread with the guard taken: it only appends here (atomic), never
#: waits for the guard.
_collected: list[Path] = []


def _hold(root: Path) -> int:
    with _locks_guard:
        _release_collected()
        held = _locks.get(root)
        if held is None:
            fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.lockf(fd, fcntl.LOCK_SH)
            held = _locks[root] = [fd, 0]
        held[1] += 1
        return held[0]


def _release_collected() -> None:
    """Drop the holds of collected ``Storage`` objects; the guard is held."""
    while _collected:
        root = _collected.pop()
        held = _locks.get(root)
        if held is not None:
            held[1] -= 1
            if held[1] == 0:
                del _locks[root]
                os.close(held[0])


_STORED = re.compile(r"^([0-9a-f]{2})/\1[0-9a-f]{22}/[0-9a-f]{24}/[0-9a-f]{40}\.dcm$")

#: Where instances kept aside wait (relative to the root; not a hash directory).
QUARANTINE = "quarantine"
#: Bytes of newly placed files whose pages stay in the page cache (``Storage.placed``).
KEEP_CACHED = 1024 * 1024 * 1024


class Storage:
    """Files under ``root``: ``ab/<study hash>/<series hash>/<sop hash>.dcm``.

    Paths are made of SHA-256 digests of the UIDs, never of the UIDs themselves,
    and kept relative to the root in the database. Instances kept aside for a
    person to file (docs/dicomweb.md "Filing and reconciliation") live apart, in
    ``quarantine/``, under random names: never indexed, never served.
    """

    def __init__(self, root: Path, keep_cached: int = KEEP_CACHED) -> None:
        self.root = root.resolve()
        self.keep_cached = keep_cached
        self._recent: deque[tuple[Path, int]] = deque()  # placed files still cached
        self._recent_bytes = 0
        self._recent_lock = threading.Lock()
        self.tmp = self.root / "tmp"
        self.thumbs = self.root / "thumbnails"
        self.quarantine = self.root / QUARANTINE
        for d in (self.root, self.tmp, self.thumbs, self.quarantine):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = _hold(self.root)
        weakref.finalize(self, _collected.append, self.root)

    def alone(self) -> bool:
        """Whether no other process has a ``Storage`` of this root now (its lock
        is converted to exclusive and back, atomically). Blocking, briefly."""
        try:
            fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN or EACCES: another process holds it
            return False
        fcntl.lockf(self._lock, fcntl.LOCK_SH)
        return True

    @staticmethod
    def _h(uid: str, n: int) -> str:
        return hashlib.sha256(uid.encode()).hexdigest()[:n]

    def is_stored_path(self, relative: str) -> bool:
        """Whether ``relative`` has the shape of ``relative_path``'s answers."""
        return _STORED.match(relative) is not None

    def relative_path(self, study: str, series: str, sop: str) -> str:
        hs = self._h(study, 24)
        return f"{hs[:2]}/{hs}/{self._h(series, 24)}/{self._h(sop, 40)}.dcm"

    @staticmethod
    def quarantine_path() -> str:
        """A new relative path in the quarantine area."""
        return f"{QUARANTINE}/{uuid.uuid4().hex}.dcm"

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("path outside the storage root")
        return path

    def new_temp(self) -> tuple[int, Path]:
        """An open file descriptor and path in the temp dir (same file system),
        named after the writing process (``temp_writer``)."""
        prefix = f"{os.getpid()}@{host_name()}~"
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix=prefix, suffix=".part")
        return fd, Path(name)

    def write_temp(self, chunks: Sequence[Buffer]) -> Path:
        """A new temp file holding ``chunks`` one after the other, written with
        ``writev`` (no join in memory). Not fsynced: see ``sync``. Blocking."""
        fd, temp = self.new_temp()
        try:
            views = [memoryview(c).cast("B") for c in chunks if len(c)]
            i = 0
            while i < len(views):
                n = os.writev(fd, views[i : i + IOV_MAX])
                while n and i < len(views):  # a short write leaves the rest of a view
                    size = len(views[i])
                    if n < size:
                        views[i] = views[i][n:]
                        break
                    n -= size
                    i += 1
        except BaseException:
            os.close(fd)
            self.discard(temp)
            raise
        os.close(fd)
        return temp

    def copy_temp(self, source: Path) -> Path:
        """A temp file with a copy of ``source``, a file that is not ours. Blocking."""
        fd, temp = self.new_temp()
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
        except BaseException:
            self.discard(temp)
            raise
        return temp

    @staticmethod
    def sync(path: Path) -> None:
        """fsync a file's data before it is moved into place. Blocking."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def uncache(path: Path) -> None:
        """Drop a written, fsynced file's pages from the page cache. Blocking."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def placed(self, path: Path, size: int) -> None:
        """Note a file just placed. The newest ``keep_cached`` bytes of files stay
        in the page cache, where the radiologist's first read finds them seconds
        later; older ones are dropped from it, so that ingest reuses the pages it
        frees instead of growing the cache by every byte received (on a VM that
        hands idle memory back to its host, each new page costs a first touch:
        docs/benchmarks.md "Served path"). Blocking."""
        if self.keep_cached <= 0:
            self.uncache(path)
            return
        old: list[Path] = []
        with self._recent_lock:
            self._recent.append((path, size))
            self._recent_bytes += size
            while self._recent_bytes > self.keep_cached and len(self._recent) > 1:
                gone, n = self._recent.popleft()
                self._recent_bytes -= n
                old.append(gone)
        for gone in old:
            self.uncache(gone)

    def place_many(self, items: list[tuple[Path, str]]) -> list[Path | OSError]:
        """Move temp files (fsynced already) to their relative paths atomically,
        then fsync each directory once (and the parents of new directories) so
        the new names are durable too. A temp that cannot be moved stays where
        it is. Blocking: run it in a thread."""
        results: list[Path | OSError] = []
        dirs: set[Path] = set()
        for temp, rel in items:
            try:
                final = self.absolute(rel)
                if not final.parent.is_dir():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    # New directories are entries of their parents: those are
                    # made durable too, up to the root.
                    dirs.update(p for p in final.parent.parents if p.is_relative_to(self.root))
                os.replace(temp, final)
            except OSError as exc:
                results.append(exc)
                continue
            dirs.add(final.parent)
            results.append(final)
            try:
                self.placed(final, final.stat().st_size)
            except OSError:
                pass  # only the page cache is at stake
        for d in dirs:
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return results

    def thumbnail_path(self, key: str) -> Path:
        return self.thumbs / f"{self._h(key, 40)}.jpg"

    @staticmethod
    def discard(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
