"""WADO-RS, PS3.18 10.4: instances, metadata, frames and bulk data.

Files are streamed as stored (no re-encoding): large ones from an mmap, their
pages read in a worker thread first; metadata is the stored DICOM JSON,
concatenated; a frame is a cached location (or one indexed SQL lookup) and a
``pread`` of its recorded byte ranges.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from pydicom import dcmread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import identity
from dicomweb import tables as t
from dicomweb.context import Context
from dicomweb.fastread import Unsupported
from dicomweb.header import KNOWN_NATIVE
from dicomweb.http import (
    MediaRange,
    accept_list,
    dicom_json,
    gzip_if_accepted,
    multipart_type,
    new_boundary,
    part_head,
)
from dicomweb.transcode import (
    explicit_instance,
    instance_plan,
    native_frames,
    not_acceptable,
    wanted_native,
)
from dicomweb.types import DicomwebError

CHUNK = 4 * 1024 * 1024
MAP_MIN = 256 * 1024  # files from this size are sent from an mmap
PAGE = mmap.PAGESIZE
OCTET = "application/octet-stream"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


async def retrieve(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1: study, series or instance as multipart/related application/dicom.
    Instances are sent as stored, except those of a study whose patient identity was
    corrected since (dicomweb/identity.py) and those transcoded for the Accept."""
    _accept(request, "application/dicom")
    asked = _syntaxes(request, "application/dicom")
    _, rows = await ctx.scoped_instances(
        request,
        t.instances.c.path,
        t.instances.c.size,
        t.instances.c.transfer_syntax_uid,
        t.studies.c.study_uid,
        t.series.c.series_uid,
        t.instances.c.sop_uid,
        *identity.COLUMNS,
    )
    boundary = new_boundary()
    base = ctx.base(request)
    paths = [ctx.storage.absolute(r.path) for r in rows]
    rewritten = await _rewritten(asked, rows, paths)
    corrected = await _corrected(ctx.corrected, rows, paths, rewritten)
    heads = [
        part_head(
            boundary,
            f"application/dicom; transfer-syntax="
            f"{EXPLICIT_LE if i in rewritten else r.transfer_syntax_uid}",
            f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}",
        )
        for i, r in enumerate(rows)
    ]
    tail = f"--{boundary}--\r\n".encode()
    segments: list[Segment] = []
    for i, (head, path, r) in enumerate(zip(heads, paths, rows, strict=True)):
        stored: list[Segment] = [rewritten[i]] if i in rewritten else [(path, r.size, 0)]
        segments += [head, *corrected.get(i, stored), b"\r\n"]
    segments.append(tail)
    # A file gone from the storage is said before the response starts, not by a cut
    # in the middle of the multipart body.
    missing = await anyio.to_thread.run_sync(_first_missing, paths)
    if missing is not None:
        raise FileNotFoundError(2, "stored file missing", str(missing))
    body = _Body(segments)
    return StreamingResponse(
        body.stream(),
        media_type=multipart_type("application/dicom", boundary),
        headers={"content-length": str(body.length)},
    )


async def _rewritten(
    asked: frozenset[str] | None, rows: list[Any], paths: list[Any]
) -> dict[int, bytes]:
    """The instances to send in Explicit VR Little Endian rather than as stored,
    by position, when the Accept names transfer syntaxes that do not include the
    stored one; 406 (before any byte is sent) when an instance can be given
    neither as stored nor so."""
    if asked is None:
        return {}
    plan = [instance_plan(asked, r.transfer_syntax_uid) for r in rows]
    for r, how in zip(rows, plan, strict=True):
        if how is None:
            raise not_acceptable(",".join(sorted(asked)), r.transfer_syntax_uid)
    out: dict[int, bytes] = {}
    for i, how in enumerate(plan):
        if how:
            out[i] = await anyio.to_thread.run_sync(explicit_instance, paths[i])
    return out


async def _corrected(
    cache: identity.Corrected, rows: list[Any], paths: list[Any], rewritten: dict[int, bytes]
) -> dict[int, list[Segment]]:
    """The instances of studies whose patient identity was corrected after they were
    stored, by position, with the study's identity (dicomweb/identity.py): the new
    head of the file, then its stored bytes from the pixel data on, sent from the
    file like any other. Those that hold the identity already are left out."""
    wanted = [(i, c) for i, c in enumerate(map(identity.correction_of, rows)) if c is not None]
    if not wanted:
        return {}

    def correct_all() -> dict[int, list[Segment]]:
        out: dict[int, list[Segment]] = {}
        for i, correction in wanted:
            if i in rewritten:
                fixed = identity.correct_part10(rewritten[i], correction)
                if fixed is not None:
                    out[i] = [fixed]
                continue
            path, size = paths[i], rows[i].size
            found = cache.get(
                ("file", rows[i].sop_uid, correction),
                lambda: _corrected_file(path, size, correction),  # noqa: B023 (called here)
            )
            if found is not None:
                out[i] = found
        return out

    return await anyio.to_thread.run_sync(correct_all)


def _corrected_file(path: Any, size: int, correction: identity.Correction) -> list[Segment] | None:
    """One stored file with the corrected identity: only its head is read (from an
    mmap) and written again; the rest is a file segment. Blocking."""
    with open(path, "rb") as f:
        if size < MAP_MIN:
            data = f.read(size)
            fixed = identity.correct_part10(data, correction)
            return None if fixed is None else [fixed]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                found = identity.corrected_head(mm, correction)
            except Unsupported:
                fixed = identity.correct_part10(mm[:size], correction)
                return None if fixed is None else [fixed]
    if found is None:
        return None
    head, rest = found
    return [head, (path, size, rest)]


def _syntaxes(request: Request, inner: str) -> frozenset[str] | None:
    """The transfer syntaxes the Accept allows for ``inner`` parts; None when
    any will do (an entry without ``transfer-syntax``, ``*``, or a wildcard type)."""
    found: set[str] = set()
    for m in accept_list(request):
        if m.type in ("*/*", "multipart/*"):
            return None
        if m.type != "multipart/related":
            continue
        if m.params.get("type", inner).lower() not in (inner, "*/*"):
            continue
        want = m.params.get("transfer-syntax")
        if want is None or want == "*":
            return None
        found.add(want)
    return frozenset(found) or None


#: A piece of a response body: bytes, or the bytes ``[start, size)`` of a stored
#: file (its path, its recorded size, where to start).
Segment = bytes | tuple[Any, int, int]


class _Body:
    """A multipart body of byte strings and stored files (path, recorded size, start).

    Files of ``MAP_MIN`` bytes or more are handed to the server as memoryviews
    of a read-only mmap: nothing is copied on our side, the kernel copies from
    the page cache into the socket. Their pages are read in a worker thread
    first (one byte per page), so the event loop's send does not wait for the
    disk. Smaller files are read and joined with the part headers. Stored files
    are never modified in place (written once: temp file, fsync, rename): a file
    truncated under a running retrieval would make the process fail (SIGBUS);
    a file already shorter than its recorded size ends the response with an error.
    """

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.length = sum(len(s) if isinstance(s, bytes) else s[1] - s[2] for s in segments)

    def _prepare(self, i: int) -> tuple[list[bytes | memoryview], int]:
        """The pieces from segment ``i`` on, up to ~CHUNK bytes of file data."""
        out: list[bytes | memoryview] = []
        small: list[bytes] = []
        mapped = 0
        while i < len(self.segments) and mapped < CHUNK:
            segment = self.segments[i]
            i += 1
            if isinstance(segment, bytes):
                small.append(segment)
                continue
            path, size, start = segment
            with open(path, "rb") as f:
                if size - start < MAP_MIN:
                    f.seek(start)
                    data = f.read(size - start)
                    if len(data) != size - start:
                        raise OSError(f"{path} is shorter than recorded")
                    small.append(data)
                    mapped += size - start
                    continue
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if len(mm) < size:
                raise OSError(f"{path} is shorter than recorded")
            mm[start - start % PAGE :: PAGE]  # fault the pages in here, not in the send
            if small:
                out.append(b"".join(small))
                small = []
            out.append(memoryview(mm)[start:size])
            mapped += size - start
        if small:
            out.append(b"".join(small))
        return out, i

    async def stream(self) -> AsyncIterator[bytes | memoryview]:
        i = 0
        while i < len(self.segments):
            pieces, i = await anyio.to_thread.run_sync(self._prepare, i)
            for piece in pieces:
                yield piece


async def metadata(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.2: the stored DICOM JSON of every instance in scope, with
    the study's corrected patient identity where it has one (dicomweb/identity.py)."""
    _, rows = await ctx.scoped_instances(
        request, t.instances.c.metadata, t.instances.c.sop_uid, *identity.COLUMNS
    )
    corrections = [identity.correction_of(r) for r in rows]

    def corrected(text: str, sop: str, c: identity.Correction) -> str:
        return ctx.corrected.get(("json", sop, c), lambda: identity.correct_metadata(text, c))

    def texts() -> list[str]:
        return [
            r.metadata if c is None else corrected(r.metadata, r.sop_uid, c)
            for r, c in zip(rows, corrections, strict=True)
        ]

    if any(corrections):
        parts = await anyio.to_thread.run_sync(texts)
    else:
        parts = [r.metadata for r in rows]
    body = dicom_json("[" + ",".join(parts) + "]", base=ctx.base(request))
    return await gzip_if_accepted(request, body)


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(x) for x in text.replace("%2C", ",").split(",") if x.strip()]
    except ValueError as exc:
        raise DicomwebError(400, "bad_request", f"bad frame list: {text!r}") from exc
    if not numbers:
        raise DicomwebError(400, "bad_request", "empty frame list")
    bad = [n for n in numbers if n < 1 or n > count]
    if bad:
        raise DicomwebError(404, "not_found", f"no frame {bad[0]} (the instance has {count})")
    return numbers


def _frame_media(request: Request, ts: str) -> tuple[str, str, bool, bool]:
    """(multipart type, part content type, single part, decompress) for the stored
    syntax, or 406. ``type="*/*"``, unquoted types and ``transfer-syntax=*`` are
    accepted. ``application/octet-stream`` means Explicit VR Little Endian unless a
    ``transfer-syntax`` says otherwise (PS3.18 8.7.3.5.2): a compressed instance is
    then decompressed (dicomweb/transcode.py)."""
    native = ts in KNOWN_NATIVE
    stored = OCTET if native else MEDIA.get(ts, OCTET)
    as_stored = f"{stored}; transfer-syntax={_ts(ts)}"
    octet_stored = f"{OCTET}; transfer-syntax={_ts(ts)}"
    decoded = f"{OCTET}; transfer-syntax={EXPLICIT_LE}"
    asked: str | None = None
    for m in accept_list(request):
        want = m.params.get("transfer-syntax")
        asked = asked or (want if want != "*" else None)
        if m.type in ("*/*", "multipart/*"):
            return stored, as_stored, False, False
        if m.type == OCTET:
            if want == "*":
                return OCTET, octet_stored, True, False
            how = wanted_native(want or EXPLICIT_LE, ts)
            if how is not None:
                return OCTET, decoded if how else octet_stored, True, how
            continue
        if m.type != "multipart/related":
            continue
        inner = m.params.get("type", "*/*").lower()
        if inner in ("*/*", stored) and want in (None, "*", ts, _ts(ts)):
            return stored, as_stored, False, False
        if inner == OCTET and want == "*":
            return OCTET, octet_stored, False, False
        if inner in (OCTET, "*/*"):
            how = wanted_native(want or EXPLICIT_LE, ts)
            if how is not None:
                return OCTET, decoded if how else octet_stored, False, how
    if asked is not None:
        raise not_acceptable(asked, ts)
    raise DicomwebError(
        406,
        "not_acceptable",
        f"frames are stored as {stored} (transfer syntax {ts}); ask for "
        f'multipart/related; type="{stored}", transfer-syntax=* or '
        f'type="{OCTET}" (decompressed)',
    )


def _ts(ts: str) -> str:
    return EXPLICIT_LE if ts == "1.2.840.10008.1.2" else ts


async def frames(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.3: frame pixel data from the byte ranges recorded at ingest."""
    row = await ctx.frame_source(request)
    if row.frames is None:
        raise DicomwebError(404, "not_found", "this instance has no addressable frames")
    ranges = row.frames
    numbers = _frame_numbers(request.path_params["frames"], len(ranges))
    inner, part_type, single, decode = _frame_media(request, row.transfer_syntax_uid)
    path = ctx.storage.absolute(row.path)
    if decode:
        blobs = await anyio.to_thread.run_sync(
            native_frames, path, numbers, row.transfer_syntax_uid
        )
    else:
        wanted = [ranges[n - 1] for n in numbers]
        total = sum(length for frame in wanted for _, length in frame)
        if total <= 2 * 1024 * 1024:
            blobs = _read_ranges(path, wanted)
        else:
            blobs = await anyio.to_thread.run_sync(_read_ranges, path, wanted)
    if single and len(blobs) == 1:
        return Response(blobs[0], media_type=part_type)
    boundary = new_boundary()
    head = part_head(boundary, part_type)
    pieces = [piece for b in blobs for piece in (head, b, b"\r\n")]
    pieces.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(pieces), media_type=multipart_type(inner, boundary))


def _first_missing(paths: list[Any]) -> Any | None:
    return next((p for p in paths if not os.path.exists(p)), None)


def _read_ranges(path: Any, frames: list[list[list[int]]]) -> list[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [b"".join(os.pread(fd, length, off) for off, length in f) for f in frames]
    finally:
        os.close(fd)


async def bulkdata(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.5: bulk data by the BulkDataURI given in the metadata."""
    _, rows = await ctx.scoped_instances(
        request, t.instances.c.path, t.instances.c.frames, t.instances.c.transfer_syntax_uid
    )
    row = rows[0]
    tag = request.path_params["tag"].upper()
    path = ctx.storage.absolute(row.path)
    boundary = new_boundary()
    ts = row.transfer_syntax_uid
    ctype = ""
    if tag == "7FE00010" and row.frames is not None:
        ranges = json.loads(row.frames)
        if _asks_decompressed(request, ts):
            numbers = list(range(1, len(ranges) + 1))
            frames = await anyio.to_thread.run_sync(native_frames, path, numbers, ts)
            blobs = [b"".join(frames)]
            inner, ctype = OCTET, f"{OCTET}; transfer-syntax={EXPLICIT_LE}"
        else:
            blobs = await anyio.to_thread.run_sync(_read_ranges, path, ranges)
            native = ts in KNOWN_NATIVE
            if native:
                blobs = [b"".join(blobs)]
            inner = OCTET if native else MEDIA.get(ts, OCTET)
    else:
        blobs = [await anyio.to_thread.run_sync(_element_bytes, path, tag)]
        inner = OCTET
    ctype = ctype or f"{inner}; transfer-syntax={_ts(ts)}"
    body = b"".join(part_head(boundary, ctype) + b + b"\r\n" for b in blobs)
    return Response(
        body + f"--{boundary}--\r\n".encode(), media_type=multipart_type(inner, boundary)
    )


def _asks_decompressed(request: Request, ts: str) -> bool:
    """Bulk data of a compressed PixelData is served as stored unless the Accept
    names ``application/octet-stream`` with a little endian ``transfer-syntax``."""
    for m in accept_list(request):
        inner = m.params.get("type", "").lower() if m.type == "multipart/related" else m.type
        want = m.params.get("transfer-syntax")
        if inner == OCTET and want is not None and want != "*":
            return bool(wanted_native(want, ts))
    return False


def _element_bytes(path: Any, tag: str) -> bytes:
    try:
        wanted = int(tag, 16)
    except ValueError as exc:
        raise DicomwebError(400, "bad_request", f"bad tag {tag!r}") from exc
    found: list[bytes] = []

    def visit(ds: Any, elem: Any) -> None:
        if not found and elem.tag == wanted and isinstance(elem.value, bytes):
            found.append(elem.value)

    dcmread(path).walk(visit)
    if not found:
        raise DicomwebError(404, "not_found", f"no bulk data {tag} in this instance")
    return found[0]


def _accept(request: Request, inner: str) -> MediaRange:
    for m in accept_list(request):
        if m.type in ("*/*", "multipart/*"):
            return m
        if m.type == "multipart/related" and m.params.get("type", inner).lower() in (inner, "*/*"):
            return m
    raise DicomwebError(406, "not_acceptable", f'answers multipart/related; type="{inner}"')
