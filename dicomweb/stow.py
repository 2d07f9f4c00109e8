"""STOW-RS, PS3.18 10.5: ``POST /studies`` and ``POST /studies/{study}``.

The ``multipart/related; type="application/dicom"`` body is parsed as it arrives
(python-multipart); each part is kept in memory (the received chunks, not copied
until the part ends), or spooled to a temp file in the storage's temp dir once it
is larger than ``SPOOL_BYTES``; a consumer task ingests completed parts while the
next ones are received. Receiving waits while more than ``QUEUED_BYTES`` of
parts are waiting for the consumer.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from starlette.requests import Request
from starlette.responses import Response

from dicomweb.http import base_of, dicom_json, dumps, parse_media
from dicomweb.ingest import Ingestor
from dicomweb.storage import Storage
from dicomweb.types import CANNOT_UNDERSTAND, DicomwebError, Failure, StoredInstance

_END = Path("/nonexistent/end-of-parts")
BATCH = 64
SPOOL_BYTES = 32 * 1024 * 1024
QUEUED_BYTES = 256 * 1024 * 1024

Part = Path | bytes


@dataclass
class _Parts:
    """Collects parts from python-multipart's callbacks, in memory or spooled."""

    storage: Storage
    done: asyncio.Queue[tuple[Part, str]]
    fd: int = -1
    path: Path | None = None
    chunks: list[bytes | memoryview] | None = None
    size: int = 0
    queued: int = 0  # bytes of in-memory parts not yet taken by the consumer
    hname: bytes = b""
    value: bytes = b""
    content_type: str = ""
    count: int = 0

    def begin(self) -> None:
        self.chunks, self.size = [], 0
        self.content_type = ""
        self.hname = self.value = b""

    @property
    def open(self) -> bool:
        return self.chunks is not None or self.path is not None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.hname += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        if self.hname.lower() == b"content-type":
            self.content_type = self.value.decode("latin-1").strip()
        self.hname = self.value = b""

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.chunks is not None:
            # The received chunk is immutable bytes: keep a view of it, no copy.
            # python-multipart may hand over its own look-behind buffer: copy that.
            view = memoryview(data)[start:end] if isinstance(data, bytes) else data[start:end]
            self.chunks.append(view)
            self.size += end - start
            if self.size <= SPOOL_BYTES:
                return
            self.fd, self.path = self.storage.new_temp()
            pending, self.chunks = self.chunks, None
        else:
            pending = [memoryview(data)[start:end]]
        for chunk in pending:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view) :]

    def end(self) -> None:
        self.count += 1
        if self.chunks is not None:
            body = b"".join(self.chunks)
            self.chunks = None
            self.queued += len(body)
            self.done.put_nowait((body, self.content_type))
            return
        os.close(self.fd)
        self.fd = -1
        assert self.path is not None
        self.done.put_nowait((self.path, self.content_type))
        self.path = None

    def abort(self) -> None:
        self.chunks = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            Storage.discard(self.path)
            self.path = None


async def stow(request: Request, ingestor: Ingestor, max_bytes: int) -> Response:
    """PS3.18 10.5.1: store the instances of the request, answer a DICOM JSON
    dataset with ReferencedSOPSequence and FailedSOPSequence (Table 10.5.3-1)."""
    principal = await ingestor.access.authenticate(request)
    study = request.path_params.get("study")
    media = parse_media(request.headers.get("content-type", ""))
    if media.type != "multipart/related":
        raise DicomwebError(
            415, "unsupported_media_type", 'expected multipart/related; type="application/dicom"'
        )
    inner = media.params.get("type", "application/dicom").lower()
    if inner != "application/dicom":
        raise DicomwebError(
            415, "unsupported_media_type", f"only application/dicom parts are accepted, not {inner}"
        )
    boundary = media.params.get("boundary")
    if not boundary:
        raise DicomwebError(400, "bad_request", "multipart/related without a boundary")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise DicomwebError(413, "too_large", f"request body larger than {max_bytes} bytes")

    queue: asyncio.Queue[tuple[Part, str]] = asyncio.Queue()
    parts = _Parts(ingestor.storage, queue)
    taken = asyncio.Event()
    parser = MultipartParser(
        boundary.encode("latin-1"),
        {
            "on_part_begin": parts.begin,
            "on_part_data": parts.data,
            "on_part_end": parts.end,
            "on_header_field": parts.header_field,
            "on_header_value": parts.header_value,
            "on_header_end": parts.header_end,
        },
    )
    results: list[StoredInstance | Failure] = []

    async def consume() -> None:
        """Ingest what has been received so far as one batch, while the rest of
        the body keeps arriving."""
        finished = False
        while not finished:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < BATCH:
                batch.append(queue.get_nowait())
            parts.queued -= sum(len(p) for p, _ in batch if isinstance(p, bytes))
            taken.set()
            dicom: list[Part] = []
            for part, ctype in batch:
                if part is _END:
                    finished = True
                elif ctype and parse_media(ctype).type != "application/dicom":
                    if isinstance(part, Path):
                        Storage.discard(part)
                    results.append(
                        Failure(CANNOT_UNDERSTAND, f"part is {ctype}, not application/dicom")
                    )
                else:
                    dicom.append(part)
            if dicom:
                results.extend(
                    await ingestor.store_many(dicom, principal, expected_study=study, owned=True)
                )

    consumer = asyncio.create_task(consume())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise DicomwebError(413, "too_large", f"request body larger than {max_bytes} bytes")
            parser.write(chunk)
            while parts.queued > QUEUED_BYTES and not consumer.done():
                taken.clear()
                await taken.wait()
        parser.finalize()
    except MultipartParseError as exc:
        await _drain(queue, consumer)
        parts.abort()
        raise DicomwebError(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
    except BaseException:
        await _drain(queue, consumer)
        parts.abort()
        raise
    truncated = parts.open
    parts.abort()
    queue.put_nowait((_END, ""))
    await consumer
    if truncated:
        results.append(Failure(CANNOT_UNDERSTAND, "the last part is truncated"))
    if parts.count == 0:
        raise DicomwebError(400, "bad_multipart", "no complete part in the multipart body")
    return _response(results, study, base_of(request, ingestor.config.public_base_url))


async def _drain(queue: asyncio.Queue[tuple[Part, str]], consumer: asyncio.Task[None]) -> None:
    consumer.cancel()
    try:
        await consumer
    except (asyncio.CancelledError, Exception):  # noqa: S110 - the request failed already
        pass
    while not queue.empty():
        part, _ = queue.get_nowait()
        if isinstance(part, Path) and part is not _END:
            Storage.discard(part)


def _response(results: list[StoredInstance | Failure], study: str | None, base: str) -> Response:
    referenced, failed = [], []
    studies: set[str] = set()
    for r in results:
        if isinstance(r, Failure):
            item = {"00081197": {"vr": "US", "Value": [r.reason]}}
            if r.sop_class_uid:
                item["00081150"] = {"vr": "UI", "Value": [r.sop_class_uid]}
            if r.sop_uid:
                item["00081155"] = {"vr": "UI", "Value": [r.sop_uid]}
            failed.append(item)
        else:
            studies.add(r.study_uid)
            referenced.append(
                {
                    "00081150": {"vr": "UI", "Value": [r.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [r.sop_uid]},
                    "00081190": {
                        "vr": "UR",
                        "Value": [
                            f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"
                        ],
                    },
                }
            )
    body: dict[str, object] = {}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    if target:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failed else (202 if referenced else 409)
    return dicom_json(dumps(body), status=status)
