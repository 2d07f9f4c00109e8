"""Reading the header of a staged instance, in a process of its own.

Parsing a header and making its DICOM JSON is pure Python: ~0.6 ms of CPU per CT
slice. In the server's process it would hold the GIL the event loop needs to
receive the rest of the body. ``HeaderReader`` hands each temp file's path to a
child process (``python -c "from dicomweb.staging import main; main()"``) and
gets back a ``Staged``: the ``Summary`` of the header and the JSON strings, a
few kilobytes, unpickled in microseconds.

The child is the server's own code. One request at a time goes over its stdin
(length-prefixed path) and one answer comes back over its stdout (length-prefixed
pickle). A child that dies on a file, takes longer than ``timeout`` on it or sends
something that is not an answer fails that instance alone (0x0110) and is started
again for the next one; a child that cannot start leaves the reading to the calling
thread, tried again a minute later. The child exits when its stdin closes, with the
server. ``HeaderReaders`` shares several children between the threads of a pool.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dicomweb.header import (
    BASE,
    SERIES_KEYS,
    STUDY_KEYS,
    Header,
    HeaderError,
    Summary,
    instance_members,
    members_json,
    read_path,
)
from dicomweb.storage import Storage
from dicomweb.types import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, PROCESSING_FAILURE, Failure

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("<I")
_READY = b"ready\n"
_COMMAND = "from dicomweb.staging import main; main()"


@dataclass
class Staged:
    """An instance checked and written to a temp file, fsynced, not yet in place
    or indexed. Whoever holds it moves the file or discards it."""

    temp: Path
    size: int
    header: Summary
    metadata: tuple[str, str, str]  # DICOM JSON: instance, study and series members


def read_staged(temp: Path) -> Staged | Failure:
    """Read and check the header of a written (and fsynced) temp file, make its
    DICOM JSON. Blocking; the CPU of staging. On failure the temp file is gone."""
    try:
        header = read_path(temp)
        try:
            meta = metadata_json(header)
        except (ValueError, TypeError) as exc:
            Storage.discard(temp)
            return fail(header, CANNOT_UNDERSTAND, f"cannot make DICOM JSON: {exc}")
        size = temp.stat().st_size
    except HeaderError as exc:
        Storage.discard(temp)
        return Failure(exc.reason, exc.message)
    except OSError as exc:
        Storage.discard(temp)
        return Failure(OUT_OF_RESOURCES, f"cannot read: {exc.strerror}")
    except Exception:  # a parser bug must not fail the other instances
        Storage.discard(temp)
        log.exception("reading a DICOM header failed")
        return Failure(CANNOT_UNDERSTAND, "cannot read the DICOM header")
    return Staged(temp, size, header.summary(), meta)


def metadata_json(h: Header) -> tuple[str, str, str]:
    base = f"{BASE}/studies/{h.study_uid}/series/{h.series_uid}/instances/{h.sop_uid}"
    members = instance_members(h, base)
    return (
        members_json(members, None, patient=False),
        members_json(members, STUDY_KEYS, patient=True),
        members_json(members, SERIES_KEYS, patient=False),
    )


def fail(h: Header | Summary, reason: int, message: str) -> Failure:
    return Failure(reason, message, h.sop_class_uid, h.sop_uid)


class _Gone(Exception):
    """The child closed its end or did not answer in time."""


class HeaderReader:
    """``read_staged`` in a child process. Not thread-safe: one thread at a time
    (``HeaderReaders`` shares several between threads)."""

    def __init__(self, timeout: float = 30.0, start_timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.retry_after = 60.0
        self.command = [sys.executable, "-c", _COMMAND]
        self.proc: subprocess.Popen[bytes] | None = None
        self._owner = -1  # the pid that started the child (a fork must not share it)
        self._ready = False  # the child said it was ready
        self._failed_at = -math.inf

    def start(self) -> bool:
        """Start the child unless it runs; False when it cannot be started."""
        return self.spawn() and self.wait_ready()

    def spawn(self) -> bool:
        """Launch the child unless it runs; ``wait_ready`` then waits for it."""
        if self.proc is not None and self._owner == os.getpid():
            if self.proc.poll() is None:
                return True
            self._reap()
        self.proc = None
        if time.monotonic() - self._failed_at < self.retry_after:
            return False
        root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and code
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
        except OSError as exc:
            return self._cannot_start(f"{exc.strerror}")
        self.proc, self._owner, self._ready = proc, os.getpid(), False
        return True

    def wait_ready(self) -> bool:
        """Wait for a launched child to say it is ready (its imports take ~0.5 s)."""
        if self.proc is None:
            return False
        if self._ready:
            return True
        assert self.proc.stdout is not None
        try:
            ready = _read_exact(self.proc.stdout.fileno(), len(_READY), self.start_timeout)
        except _Gone:
            ready = b""
        if ready != _READY:
            self._reap()
            return self._cannot_start("it did not answer")
        self._ready = True
        return True

    def _cannot_start(self, why: str) -> bool:
        self._failed_at = time.monotonic()
        log.warning(
            "the header reader process cannot start (%s): headers are read in the "
            "server's process, trying again in %.0f s",
            why,
            self.retry_after,
        )
        return False

    def stop(self) -> None:
        if self.proc is not None and self._owner == os.getpid():
            self._reap()
        self.proc = None

    def _reap(self) -> None:
        assert self.proc is not None
        _kill(self.proc)
        self.proc = None

    def read(self, temp: Path) -> Staged | Failure:
        """``read_staged(temp)``, in the child when it runs."""
        path = os.fsencode(temp)
        for _ in range(2):
            if not self.start():
                break
            assert self.proc is not None and self.proc.stdin and self.proc.stdout
            try:
                _write_all(self.proc.stdin.fileno(), _LENGTH.pack(len(path)) + path)
            except OSError:  # it died since the last file: not this file's doing
                self._reap()
                continue
            try:
                out = self.proc.stdout.fileno()
                (size,) = _LENGTH.unpack(_read_exact(out, _LENGTH.size, self.timeout))
                answer = _read_exact(out, size, self.timeout)
                result = pickle.loads(answer)  # noqa: S301 - from our own child
            except _Gone as exc:
                why = str(exc)
            except Exception as exc:  # noqa: BLE001 - whatever it sent, it is not an answer
                why = f"an unreadable answer ({type(exc).__name__})"
            else:
                if isinstance(result, Staged | Failure):
                    return result
                why = f"an answer of type {type(result).__name__}"
            self._reap()
            Storage.discard(temp)
            log.error("the header reader process failed on %s: %s", temp.name, why)
            return Failure(PROCESSING_FAILURE, f"the header could not be read: {why}")
        return read_staged(temp)


class HeaderReaders:
    """Several ``HeaderReader``s for the threads of a pool: each read takes one
    that is free, so that headers are read side by side."""

    def __init__(self, count: int) -> None:
        self.all = [HeaderReader() for _ in range(count)]
        self._free: queue.SimpleQueue[HeaderReader] = queue.SimpleQueue()
        for reader in self.all:
            self._free.put(reader)

    def start(self) -> None:
        """Start every child that does not run (no read meanwhile)."""
        taken = [self._free.get() for _ in self.all]
        try:
            for reader in taken:  # launched side by side, then waited for
                reader.spawn()
            for reader in taken:
                reader.wait_ready()
        finally:
            for reader in taken:
                self._free.put(reader)

    def read(self, temp: Path) -> Staged | Failure:
        reader = self._free.get()
        try:
            return reader.read(temp)
        finally:
            self._free.put(reader)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _read_exact(fd: int, size: int, timeout: float | None) -> bytes:
    """``size`` bytes from ``fd``; _Gone at end of file or after ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise _Gone(f"no answer within {timeout:.0f} s")
        chunk = os.read(fd, left)
        if not chunk:
            raise _Gone("the process stopped")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> None:
    """The child: answer each path with the pickled ``read_staged`` until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    inp, out = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the answers
    try:
        _write_all(out, _READY)
    except BrokenPipeError:
        return  # the server stopped while this child was starting
    while True:
        try:
            (size,) = _LENGTH.unpack(_read_exact(inp, _LENGTH.size, None))
            path = Path(os.fsdecode(_read_exact(inp, size, None)))
        except _Gone:
            return
        answer = pickle.dumps(read_staged(path), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(out, _LENGTH.pack(len(answer)) + answer)
        except BrokenPipeError:
            return
