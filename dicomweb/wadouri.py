"""WADO-URI, PS3.18 chapter 9: ``GET {base}/wado?requestType=WADO&studyUID=…
&seriesUID=…&objectUID=…``, the links RIS and older viewers still hold.

Two transactions share the route and are told apart by the media type chosen
(PS3.18 9.3): Retrieve DICOM Instance (9.4, ``application/dicom``: the stored
Part-10 file, or Explicit VR Little Endian when ``transferSyntax`` asks for it)
and Retrieve Rendered Instance (9.5, ``image/jpeg`` by default, ``image/png``,
``image/gif``), rendered by dicomweb/render.py with ``rows``, ``columns``,
``region``, ``windowCenter``/``windowWidth``, ``frameNumber`` and
``imageQuality``. The instance is looked up with the caller's ``study_filter``,
as every WADO-RS request is: another establishment's instance is a 404.
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio.to_thread
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from dicomweb import identity
from dicomweb import tables as t
from dicomweb.context import Context
from dicomweb.http import accept_list
from dicomweb.render import FORMATS, Options, render_file
from dicomweb.transcode import EXPLICIT_LE, explicit_instance, instance_plan, not_acceptable
from dicomweb.types import DicomwebError

DICOM = "application/dicom"
UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: Parameters PS3.18 9.4/9.5 define that this archive cannot honour: refused, not
#: ignored, so that nobody takes an identified image for an anonymised one.
REFUSED = {
    "anonymize": "anonymisation is not offered",
    "annotation": "burned-in annotation is not offered",
    "presentationUID": "presentation states are not applied",
    "presentationSeriesUID": "presentation states are not applied",
}
RENDER_ONLY = (
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "frameNumber",
    "imageQuality",
)


def _bad(message: str) -> DicomwebError:
    return DicomwebError(400, "bad_request", message)


def _uids(qp: QueryParams) -> dict[str, str]:
    """PS3.18 9.1.2.1: requestType=WADO and the three UIDs, each once, well formed."""
    request_type = qp.getlist("requestType")
    if request_type != ["WADO"]:
        raise _bad("requestType=WADO is required")
    out: dict[str, str] = {}
    for name, key in (("studyUID", "study"), ("seriesUID", "series"), ("objectUID", "instance")):
        values = qp.getlist(name)
        if len(values) != 1:
            raise _bad(f"{name} is required, once")
        if len(values[0]) > 64 or not UID.fullmatch(values[0]):
            raise _bad(f"{name} is not a UID")
        out[key] = values[0]
    return out


def _media(request: Request) -> str:
    """The Selected Media Type (PS3.18 9.3): ``contentType`` (or ``accept``), a
    comma-separated list, else the Accept header; ``*/*`` is ``image/jpeg``."""
    qp = request.query_params
    listed = qp.get("contentType") or qp.get("accept")
    if listed:
        wanted = [v.split(";")[0].strip().lower() for v in listed.split(",") if v.strip()]
    else:
        wanted = [m.type for m in accept_list(request)]
    for media in wanted:
        if media in ("*/*", "image/*"):
            return "image/jpeg"
        if media == DICOM or media in FORMATS:
            return media
    raise DicomwebError(
        406,
        "not_acceptable",
        f"WADO-URI answers {DICOM}, image/jpeg, image/png or image/gif, not {', '.join(wanted)}",
    )


def _number(qp: QueryParams, name: str, cast: type[int] | type[float]) -> float | None:
    value = qp.get(name)
    if value is None:
        return None
    try:
        return cast(value)
    except ValueError:
        raise _bad(f"{name} is not a number") from None


def _options(qp: QueryParams, frames: int) -> tuple[Options, int]:
    """PS3.18 9.5.1.2 rendering parameters as the archive's options, and the frame."""
    rows, columns = _number(qp, "rows", int), _number(qp, "columns", int)
    for name, size in (("rows", rows), ("columns", columns)):
        if size is not None and not 0 < size <= 8192:
            raise _bad(f"{name} must be between 1 and 8192")
    viewport = None
    if rows or columns:
        viewport = (int(columns or 8192), int(rows or 8192))
    center, width = _number(qp, "windowCenter", float), _number(qp, "windowWidth", float)
    if (center is None) != (width is None):
        raise _bad("windowCenter and windowWidth go together")
    window = None
    if center is not None and width is not None:
        window = (center, max(width, 1.0), "LINEAR")
    quality = _number(qp, "imageQuality", int)
    if quality is not None and not 1 <= quality <= 100:
        raise _bad("imageQuality must be between 1 and 100")
    region = None
    if "region" in qp:
        try:
            left, top, right, bottom = (float(v) for v in qp["region"].split(","))
        except ValueError:
            raise _bad("region is four numbers: left,top,right,bottom") from None
        if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            raise _bad("region must lie within 0.0-1.0, left < right and top < bottom")
        region = (left, top, right, bottom)
    frame = 1
    if "frameNumber" in qp:
        number = _number(qp, "frameNumber", int)
        # PS3.18 9.5.2: only for a multi-frame instance, within its frames.
        if frames <= 1 or number is None or not 1 <= number <= frames:
            raise _bad(f"frameNumber must name one of the instance's frames ({frames})")
        frame = int(number)
    opts = Options(
        window=window,
        viewport=viewport,
        quality=int(quality) if quality is not None else 90,
        region=region,
    )
    return opts, frame


async def wado(request: Request, ctx: Context) -> Response:
    """PS3.18 9.4 Retrieve DICOM Instance and 9.5 Retrieve Rendered Instance."""
    qp = request.query_params
    uids = _uids(qp)
    for name, why in REFUSED.items():
        if name in qp:
            raise _bad(f"{name}: {why}")
    media = _media(request)
    _, rows = await ctx.scoped_instances(
        request,
        t.instances.c.path,
        t.instances.c.transfer_syntax_uid,
        t.instances.c.number_of_frames,
        t.instances.c.frames,
        *identity.COLUMNS,
        uids=uids,
    )
    row = rows[0]
    path = ctx.storage.absolute(row.path)
    headers = {"cache-control": "private, max-age=3600"}
    if media == DICOM:
        extra = [name for name in RENDER_ONLY if name in qp]
        if extra:
            raise _bad(f"{', '.join(extra)}: rendering parameters, not for {DICOM}")
        asked = qp.get("transferSyntax")
        how = instance_plan(frozenset({asked}) if asked else None, row.transfer_syntax_uid)
        if how is None:
            raise not_acceptable(str(asked), row.transfer_syntax_uid)
        # The patient identity may be corrected at any time: the browser asks again.
        fresh = {"cache-control": "private, no-cache"}
        correction = identity.correction_of(row)
        if how or correction is not None:
            body = await anyio.to_thread.run_sync(_instance, path, how, correction)
            ts = EXPLICIT_LE if how else row.transfer_syntax_uid
            return Response(body, media_type=f"{DICOM}; transfer-syntax={ts}", headers=fresh)
        return FileResponse(path, media_type=DICOM, headers=fresh)
    if "transferSyntax" in qp:
        raise _bad(f"transferSyntax is for {DICOM}, not {media}")
    if row.frames is None:
        raise DicomwebError(406, "not_acceptable", f"this instance holds no image: ask for {DICOM}")
    opts, frame = _options(qp, row.number_of_frames or 1)
    body = await anyio.to_thread.run_sync(render_file, path, frame - 1, opts, media)
    return Response(body, media_type=media, headers=headers)


def _instance(path: Path, transcode: bool, correction: identity.Correction | None) -> bytes:
    """The instance's bytes, in Explicit VR Little Endian when ``transcode``, with
    the study's corrected patient identity when it has one. Blocking."""
    data = explicit_instance(path) if transcode else path.read_bytes()
    if correction is not None:
        data = identity.correct_part10(data, correction) or data
    return data
