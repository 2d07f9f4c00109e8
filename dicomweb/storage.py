"""Where the Part-10 bytes live on disk, written atomically and named so that no
UID can steer a path outside the storage root."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

#: iovecs per ``writev`` call (Linux's IOV_MAX)
IOV_MAX = 1024
Buffer = bytes | bytearray | memoryview
#: Where instances kept aside wait (relative to the root; not a hash directory).
QUARANTINE = "quarantine"


class Storage:
    """Files under ``root``: ``ab/<study hash>/<series hash>/<sop hash>.dcm``.

    Paths are made of SHA-256 digests of the UIDs, never of the UIDs themselves,
    and kept relative to the root in the database. Instances kept aside for a
    person to file (docs/dicomweb.md "Filing and reconciliation") live apart, in
    ``quarantine/``, under random names: never indexed, never served.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / "tmp"
        self.thumbs = self.root / "thumbnails"
        self.quarantine = self.root / QUARANTINE
        for d in (self.root, self.tmp, self.thumbs, self.quarantine):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _h(uid: str, n: int) -> str:
        return hashlib.sha256(uid.encode()).hexdigest()[:n]

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
        """An open file descriptor and path in the temp dir (same file system)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
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
        """Drop a written, fsynced file's pages from the page cache. The archive
        writes each file once and reads it later, if ever: its pages are freed at
        once for the next files instead of growing the cache by every byte
        received (which costs ingest a first touch of new memory per page on a VM
        that hands idle memory back to its host; docs/benchmarks.md), and they
        do not push out what viewers are reading. Blocking."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

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
