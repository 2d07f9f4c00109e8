"""Where the Part-10 bytes live on disk, written atomically and named so that no
UID can steer a path outside the storage root."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dicomweb-fsync")


def _capture(fn: Callable[[T], R]) -> Callable[[T], R | OSError]:
    def run(arg: T) -> R | OSError:
        try:
            return fn(arg)
        except OSError as exc:
            return exc

    return run


class Storage:
    """Files under ``root``: ``ab/<study hash>/<series hash>/<sop hash>.dcm``.

    Paths are made of SHA-256 digests of the UIDs, never of the UIDs themselves,
    and kept relative to the root in the database.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / "tmp"
        self.thumbs = self.root / "thumbnails"
        for d in (self.root, self.tmp, self.thumbs):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _h(uid: str, n: int) -> str:
        return hashlib.sha256(uid.encode()).hexdigest()[:n]

    def relative_path(self, study: str, series: str, sop: str) -> str:
        hs = self._h(study, 24)
        return f"{hs[:2]}/{hs}/{self._h(series, 24)}/{self._h(sop, 40)}.dcm"

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("path outside the storage root")
        return path

    def new_temp(self) -> tuple[int, Path]:
        """An open file descriptor and path in the temp dir (same file system)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        return fd, Path(name)

    def commit(self, temp: Path, relative: str) -> Path:
        """fsync ``temp`` and move it to ``relative`` atomically; the directory
        entry is made durable too. Blocking: run it in a thread."""
        final = self.absolute(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return final

    def commit_many(self, items: list[tuple[Path | bytes, str]]) -> list[Path | OSError]:
        """``commit`` for a batch: the files (or bytes, written to temp files here)
        are fsynced in parallel, renamed, and each directory fsynced once.
        Blocking: run it in a thread."""

        def sync(source: Path | bytes) -> Path:
            if isinstance(source, Path):
                fd = os.open(source, os.O_RDONLY)
                temp = source
            else:
                fd, temp = self.new_temp()
            try:
                if not isinstance(source, Path):
                    view = memoryview(source)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                if temp is not source:
                    self.discard(temp)
                raise
            finally:
                os.close(fd)
            return temp

        results: list[Path | OSError] = []
        synced = list(_POOL.map(_capture(sync), [source for source, _ in items]))
        dirs: set[Path] = set()
        for (source, rel), temp in zip(items, synced, strict=True):
            if isinstance(temp, OSError):
                results.append(temp)
                continue
            try:
                final = self.absolute(rel)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, final)
                dirs.add(final.parent)
                results.append(final)
            except OSError as exc:
                if not isinstance(source, Path):
                    self.discard(temp)
                results.append(exc)
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
