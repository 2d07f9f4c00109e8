"""Rendered resources and thumbnails, PS3.18 10.4.1.1.4 (rendered) and 10.4.1.1.6
(thumbnail; optional in the standard, used by viewers and by room events).

Pixels are decoded by pydicom's handlers (pylibjpeg for JPEG, JPEG 2000 and RLE),
the Modality LUT/rescale and then the VOI window of the dataset are applied unless
the request gives ``window``; MONOCHROME1 is inverted. Thumbnails are made on the
first request, off the event loop, and cached on disk.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import tables as t
from dicomweb.context import Context
from dicomweb.http import accept_list, multipart_type, new_boundary, part_head
from dicomweb.types import DicomwebError

log = logging.getLogger("dicomweb.render")
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


@dataclass(frozen=True)
class Options:
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90
    #: WADO-URI ``region``: left, top, right, bottom as fractions of the image.
    region: tuple[float, float, float, float] | None = None


def parse_options(request: Request) -> Options:
    qp = request.query_params
    window = viewport = None
    try:
        if "window" in qp:
            parts = qp["window"].split(",")
            fn = parts[2].strip().upper() if len(parts) > 2 else "LINEAR"
            window = (float(parts[0]), max(float(parts[1]), 1.0), fn)
        if "viewport" in qp:
            vp = [int(float(v)) for v in qp["viewport"].split(",") if v]
            viewport = (vp[0], vp[1]) if len(vp) >= 2 else (vp[0], vp[0])
        quality = int(qp.get("quality", "90"))
    except (ValueError, IndexError) as exc:
        raise DicomwebError(400, "bad_query", f"bad rendering parameter: {exc}") from exc
    if not 1 <= quality <= 100:
        raise DicomwebError(400, "bad_query", "quality must be between 1 and 100")
    if viewport and not (0 < viewport[0] <= 8192 and 0 < viewport[1] <= 8192):
        raise DicomwebError(400, "bad_query", "viewport out of range")
    return Options(window, viewport, quality)


def pick_format(request: Request) -> str:
    for m in accept_list(request):
        if m.type in FORMATS:
            return m.type
        if m.type in ("*/*", "image/*"):
            return "image/jpeg"
    raise DicomwebError(
        406, "not_acceptable", "rendered media types: image/jpeg, image/png, image/gif"
    )


def to_image(ds: Any, arr: np.ndarray, window: tuple[float, float, str] | None) -> Image.Image:
    """Display pixels: modality LUT, VOI (given window, the dataset's, else min/max)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype != np.uint8:
            top = float(arr.max()) or 1.0
            arr = (arr.astype(np.float32) * (255.0 / top)).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    values = apply_modality_lut(arr, ds).astype(np.float32)
    if window is None and ("WindowCenter" in ds or "VOILUTSequence" in ds):
        if "VOILUTSequence" in ds and "WindowCenter" not in ds:
            values = apply_voi_lut(values, ds).astype(np.float32)
        else:
            c, w = _first(ds.WindowCenter), _first(ds.WindowWidth)
            fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            window = (c, max(w, 1.0), fn)
    if window is not None:
        c, w, fn = window
        if fn == "SIGMOID":
            out = 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
        else:
            out = np.clip((values - (c - 0.5)) / (w - 1 if w > 1 else 1) + 0.5, 0.0, 1.0)
    else:
        lo, hi = float(values.min()), float(values.max())
        out = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return Image.fromarray((out * 255.0 + 0.5).astype(np.uint8), "L")


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def render_file(path: Path, index: int, opts: Options, fmt: str) -> bytes:
    """Blocking: decode one frame and encode it. Run it in a worker thread."""
    ds = dcmread(path)
    try:
        arr = (
            pixel_array(ds, index=index)
            if int(ds.get("NumberOfFrames", 1) or 1) > 1
            else (ds.pixel_array)
        )
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise DicomwebError(
            422,
            "cannot_render",
            f"cannot decode pixel data ({ds.file_meta.get('TransferSyntaxUID', '?')}): {exc}",
        ) from exc
    img = to_image(ds, arr, opts.window)
    if opts.region:
        left, top, right, bottom = opts.region
        w, h = img.size
        img = img.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    if opts.viewport:
        img.thumbnail(opts.viewport, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if FORMATS[fmt] == "JPEG":
        img.save(buf, "JPEG", quality=opts.quality)
    else:
        img.save(buf, FORMATS[fmt])
    return buf.getvalue()


async def rendered(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.4: an instance (its first frame) or a frame, as an image."""
    fmt = pick_format(request)
    opts = parse_options(request)
    _, rows = await ctx.scoped_instances(
        request, t.instances.c.path, t.instances.c.number_of_frames
    )
    row = rows[0]
    frame = 1
    if "frames" in request.path_params:
        try:
            frame = int(request.path_params["frames"].split(",")[0])
        except ValueError as exc:
            raise DicomwebError(400, "bad_request", "bad frame number") from exc
        if not 1 <= frame <= (row.number_of_frames or 1):
            raise DicomwebError(404, "not_found", f"no frame {frame}")
    body = await anyio.to_thread.run_sync(
        render_file, ctx.storage.absolute(row.path), frame - 1, opts, fmt
    )
    return Response(body, media_type=fmt, headers={"cache-control": "private, max-age=3600"})


def pick_many_format(request: Request) -> tuple[str, bool]:
    """(image type, multipart) for a rendered study or series: every instance as
    ``multipart/related; type="image/..."`` when the Accept asks for that, else one
    image (a bare ``image/jpeg``, ``image/*`` or ``*/*``, what dicomweb-client's
    ``retrieve_series_rendered`` and an ``<img>`` ask for)."""
    for m in accept_list(request):
        if m.type == "multipart/related":
            inner = m.params.get("type", "*/*").lower()
            if inner in FORMATS:
                return inner, True
            if inner in ("*/*", "image/*"):
                return "image/jpeg", True
            continue
        if m.type in FORMATS:
            return m.type, False
        if m.type in ("*/*", "image/*"):
            return "image/jpeg", False
    raise DicomwebError(
        406,
        "not_acceptable",
        "rendered media types: image/jpeg, image/png, image/gif, alone or as "
        'multipart/related; type="image/jpeg" (one part per instance)',
    )


async def rendered_many(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.3, rendered study and series (docs/dicomweb.md "Rendered
    study and series"). Asked as ``multipart/related; type=<image type>``: every
    image instance of the resource rendered (its first frame, with the options of
    an instance), one part each with the instance's rendered URL as
    Content-Location, in series then instance order, rendered one after the other
    in a worker thread as the response is sent. Asked as a single image type: the
    first image instance of the resource, rendered. Instances without pixel data
    (reports, presentation states) are left out."""
    fmt, many = pick_many_format(request)
    opts = parse_options(request)
    _, rows = await ctx.scoped_instances(
        request,
        t.instances.c.path,
        t.instances.c.frames,
        t.studies.c.study_uid,
        t.series.c.series_uid,
        t.instances.c.sop_uid,
    )
    images = [r for r in rows if r.frames is not None]
    if not images:
        raise DicomwebError(422, "cannot_render", "no instance of it holds an image")
    first = await anyio.to_thread.run_sync(
        render_file, ctx.storage.absolute(images[0].path), 0, opts, fmt
    )
    cache = {"cache-control": "private, max-age=3600"}
    if not many:
        return Response(first, media_type=fmt, headers=cache)
    base = ctx.base(request)
    boundary = new_boundary()

    def part(row: Any, body: bytes) -> bytes:
        location = (
            f"{base}/studies/{row.study_uid}/series/{row.series_uid}"
            f"/instances/{row.sop_uid}/rendered"
        )
        return part_head(boundary, fmt, location) + body + b"\r\n"

    async def stream() -> AsyncIterator[bytes]:
        yield part(images[0], first)
        for row in images[1:]:
            try:
                body = await anyio.to_thread.run_sync(
                    render_file, ctx.storage.absolute(row.path), 0, opts, fmt
                )
            except Exception:  # already answering 200: this one is left out, not the rest
                log.warning("instance %s not rendered", row.sop_uid, exc_info=True)
                continue
            yield part(row, body)
        yield f"--{boundary}--\r\n".encode()

    return StreamingResponse(stream(), media_type=multipart_type(fmt, boundary), headers=cache)


async def thumbnail(request: Request, ctx: Context) -> Response:
    """PS3.18 10.4.1.1.6: a small JPEG of the middle instance of the study's first
    series, of the series, or of the instance; cached on disk after the first call."""
    _, rows = await ctx.scoped_instances(
        request, t.instances.c.path, t.instances.c.number_of_frames, t.series.c.id
    )
    first_series = rows[0].id
    rows = [r for r in rows if r.id == first_series]
    row = rows[len(rows) // 2]
    size = ctx.config.thumbnail_size
    opts = parse_options(request)
    if opts.viewport:
        size = max(opts.viewport)
    key = f"{request.url.path}|{size}|{len(rows)}|{row.path}"
    cached = ctx.storage.thumbnail_path(key)
    if not cached.exists():
        opts = Options(opts.window, (size, size), 85)
        index = (row.number_of_frames or 1) // 2
        body = await anyio.to_thread.run_sync(
            render_file, ctx.storage.absolute(row.path), index, opts, "image/jpeg"
        )
        await anyio.to_thread.run_sync(_write_cache, cached, body)
    else:
        body = await anyio.to_thread.run_sync(cached.read_bytes)
    return Response(
        body, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"}
    )


def _write_cache(path: Path, body: bytes) -> None:
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_bytes(body)
    os.replace(temp, path)
