"""STOW-RS, PS3.18 10.5: ``POST /studies`` and ``POST /studies/{study}``.

The ``multipart/related; type="application/dicom"`` body is parsed as it arrives
(python-multipart). Each part is kept as the received chunks (views, no copy),
or spooled to a temp file in the storage's temp dir once it is larger than
``SPOOL_BYTES``. When a part ends it is staged at once (``Ingestor.stage_soon``:
written with writev and fsynced in an I/O pool, several side by side, then its
header read), while a consumer task indexes whatever is staged, in part order
and in batches, and the rest of the body keeps arriving. Receiving waits while
more than ``QUEUED_BYTES`` of received parts are still being staged.
"""

from __future__ import annotations

import asyncio
import os
import string
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dicomweb.dicomxml import DICOM_XML, public_only, to_xml
from dicomweb.http import DICOM_JSON, accept_list, base_of, dicom_json, dumps, parse_media
from dicomweb.ingest import Ingestor, discard_staged
from dicomweb.outcome import failed_item, referenced_item
from dicomweb.staging import Staged
from dicomweb.storage import Storage
from dicomweb.types import CANNOT_UNDERSTAND, DicomwebError, Failure, KeptAside, StoredInstance

BATCH = 64
SPOOL_BYTES = 32 * 1024 * 1024
QUEUED_BYTES = 256 * 1024 * 1024

Pending = asyncio.Future[Staged | Failure]
# RFC 2046 5.1.1: 1 to 70 characters of bchars, the last one not a space.
BOUNDARY_CHARS = frozenset(string.ascii_letters + string.digits + "'()+_,-./:=? ")
MAX_BOUNDARY = 70
# A part header line is a few dozen bytes; python-multipart would gather any length.
MAX_HEADER_BYTES = 8 * 1024


def check_boundary(boundary: str) -> None:
    """400 ``bad_boundary`` unless ``boundary`` is one RFC 2046 5.1.1 allows: a longer
    one is refused before the parser holds a look-behind buffer of its size."""
    if len(boundary) > MAX_BOUNDARY:
        raise DicomwebError(
            400, "bad_boundary", f"the multipart boundary is over {MAX_BOUNDARY} characters"
        )
    if not set(boundary) <= BOUNDARY_CHARS or boundary.endswith(" "):
        raise DicomwebError(
            400, "bad_boundary", "the multipart boundary has characters RFC 2046 does not allow"
        )


def _check_header(value: bytes) -> None:
    if len(value) > MAX_HEADER_BYTES:
        raise DicomwebError(400, "bad_multipart", f"a part header is over {MAX_HEADER_BYTES} bytes")


@dataclass
class _Parts:
    """Collects parts from python-multipart's callbacks, in memory or spooled,
    and stages each as it ends; ``pending`` holds the stagings in part order,
    then ``None`` once the body is over."""

    ingestor: Ingestor
    pending: deque[Pending | None] = field(default_factory=deque)
    more: asyncio.Event = field(default_factory=asyncio.Event)  # pending grew
    staged: asyncio.Event = field(default_factory=asyncio.Event)  # queued shrank
    fd: int = -1
    path: Path | None = None
    chunks: list[bytes | memoryview] | None = None
    size: int = 0
    queued: int = 0  # bytes of in-memory parts still being staged
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
        _check_header(self.hname)

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]
        _check_header(self.value)

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
            self.fd, self.path = self.ingestor.storage.new_temp()
            pending, self.chunks = self.chunks, None
        else:
            pending = [memoryview(data)[start:end]]
        for chunk in pending:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view) :]

    def end(self) -> None:
        self.count += 1
        ctype = self.content_type
        if ctype and parse_media(ctype).type != "application/dicom":
            self.abort()
            failure = Failure(CANNOT_UNDERSTAND, f"part is {ctype}, not application/dicom")
            staging: Pending = asyncio.get_running_loop().create_future()
            staging.set_result(failure)
        elif self.chunks is not None:
            chunks, size = self.chunks, self.size
            self.chunks = None
            self.queued += size
            staging = self.ingestor.stage_soon(chunks)
            staging.add_done_callback(lambda _: self._staged(size))
        else:
            os.close(self.fd)
            self.fd = -1
            assert self.path is not None
            staging = self.ingestor.stage_soon(self.path, owned=True)
            self.path = None
        self.pending.append(staging)
        self.more.set()

    def _staged(self, size: int) -> None:
        self.queued -= size
        self.staged.set()

    def finish(self) -> None:
        self.pending.append(None)
        self.more.set()

    def abort(self) -> None:
        """Drop the part being received."""
        self.chunks = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path is not None:
            Storage.discard(self.path)
            self.path = None

    def drop_pending(self) -> None:
        """The request failed: whatever was staged and not indexed goes, now or
        when its staging finishes."""
        while self.pending:
            staging = self.pending.popleft()
            if staging is not None:
                staging.add_done_callback(_discard_result)


def _discard_result(staging: Pending) -> None:
    if not staging.cancelled() and staging.exception() is None:
        discard_staged([staging.result()])


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
    check_boundary(boundary)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise DicomwebError(413, "too_large", f"request body larger than {max_bytes} bytes")

    parts = _Parts(ingestor)
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
    results: list[StoredInstance | KeptAside | Failure] = []

    async def consume() -> None:
        """Index what is staged so far as one batch (at most ``BATCH``, in part
        order), while later parts are staged and the body keeps arriving."""
        pending = parts.pending
        while True:
            while not pending:
                parts.more.clear()
                await parts.more.wait()
            head = pending[0]
            if head is None:
                return
            await asyncio.wait([head])
            batch: list[Staged | Failure] = []
            while pending and len(batch) < BATCH:
                staging = pending[0]
                if staging is None or not staging.done():
                    break
                pending.popleft()
                batch.append(staging.result())
            # From here the batch is store_staged's: it places or discards it.
            results.extend(await ingestor.store_staged(batch, principal, expected_study=study))

    consumer = asyncio.create_task(consume())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise DicomwebError(413, "too_large", f"request body larger than {max_bytes} bytes")
            parser.write(chunk)
            while parts.queued > QUEUED_BYTES:
                parts.staged.clear()
                await parts.staged.wait()
        parser.finalize()
    except MultipartParseError as exc:
        await _stop(consumer, parts)
        raise DicomwebError(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
    except ClientDisconnect:
        # The client left, or stalled and was answered 408 (server/web/httpserver.py).
        await _stop(consumer, parts)
        raise DicomwebError(400, "body_incomplete", "the request body ended early") from None
    except BaseException:
        await _stop(consumer, parts)
        raise
    truncated = parts.open
    parts.abort()
    parts.finish()
    try:
        await consumer
    finally:
        parts.drop_pending()
    if truncated:
        results.append(Failure(CANNOT_UNDERSTAND, "the last part is truncated"))
    if parts.count == 0:
        raise DicomwebError(400, "bad_multipart", "no complete part in the multipart body")
    xml = _wants_xml(request)
    return _response(results, study, base_of(request, ingestor.config.public_base_url), xml)


async def _stop(consumer: asyncio.Task[None], parts: _Parts) -> None:
    consumer.cancel()
    try:
        await consumer
    except (asyncio.CancelledError, Exception):  # noqa: S110 - the request failed already
        pass
    parts.abort()
    parts.drop_pending()


def _wants_xml(request: Request) -> bool:
    """PS3.18 10.5.3: the response is DICOM JSON unless the Accept prefers
    ``application/dicom+xml`` (PS3.19 Native DICOM Model)."""
    for m in accept_list(request):
        if m.type in (DICOM_JSON, "application/json", "*/*", "application/*"):
            return False
        if m.type == DICOM_XML:
            return True
    return False


def _response(
    results: list[StoredInstance | KeptAside | Failure],
    study: str | None,
    base: str,
    xml: bool = False,
) -> Response:
    """PS3.18 Table 10.5.3-3; instances kept aside are referenced with a warning
    (dicomweb/outcome.py), so a response with any is 202 like one with failures."""
    referenced, failed = [], []
    studies: set[str] = set()
    warned = False
    for part, r in enumerate(results, start=1):  # results are in part order
        if isinstance(r, Failure):
            failed.append(failed_item(r, part))
        else:
            warned = warned or isinstance(r, KeptAside)
            if isinstance(r, StoredInstance):
                studies.add(r.study_uid)
            referenced.append(referenced_item(r, base, part))
    body: dict[str, object] = {}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    if target:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not (failed or warned) else (202 if referenced else 409)
    if xml:
        # The private outcome block is for the room's upload, which reads JSON;
        # generic XML readers (dicomweb-client's) expect public keywords only.
        return Response(to_xml(public_only(body)), status_code=status, media_type=DICOM_XML)
    return dicom_json(dumps(body), status=status)
