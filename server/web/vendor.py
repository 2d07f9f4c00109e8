"""The vendored viewer modules under ``/vendor/`` (docs/frontend.md "The vendored
Cornerstone3D"): precompressed, and kept for good when their name holds their content's
hash.

``scripts/build-vendor.sh`` writes, beside each module and decoder, its gzip (``.gz``)
and brotli (``.br``) copy. The browser's ``Accept-Encoding`` picks one (RFC 9110 12.5.3;
brotli first, RFC 7932), answered with ``Content-Encoding`` and ``Vary: Accept-Encoding``
(RFC 9110 8.4, 12.5.5) and the type of the module itself: the server compresses nothing
while it runs. A file whose name holds a content hash (esbuild's ``chunk-XXXXXXXX.js``,
the build's ``cornerstone-XXXXXXXX.js``) never changes under that name: it is
``immutable`` for a year (RFC 8246), so a browser that has it asks nothing. The few
names that stay the same from one build to the next (``cornerstone.js``, which names the
hashed module, the decoding worker's entry, the WebAssembly decoders) are revalidated on
each use (``no-cache`` with an ETag, RFC 9111 5.2.2.4).
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

from dicomweb.http import accepted_codings

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# esbuild's [hash] (8 characters, A-Z and 2-7) before the extension.
HASHED = re.compile(r"-[A-Z2-7]{8}\.(js|wasm)$")
# Best first: brotli is about a fifth smaller than gzip on the bundle.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


def cache_control(path: str) -> str:
    return IMMUTABLE if HASHED.search(path) else REVALIDATE


class VendorFiles(StaticFiles):
    """Starlette's static files, with the precompressed copies and the cache rule above."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        request_headers = Headers(scope=scope)
        path = str(full_path)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        served, coding = path, None
        if not path.endswith((".br", ".gz")):
            allowed = accepted_codings(request_headers.get("accept-encoding", ""))
            for name, suffix in ENCODINGS:
                if name in allowed and os.path.isfile(path + suffix):
                    served, coding = path + suffix, name
                    break
        stat = os.stat(served) if coding else stat_result
        response = FileResponse(
            served, status_code=status_code, stat_result=stat, media_type=media_type
        )
        response.headers["cache-control"] = cache_control(Path(path).name)
        response.headers["vary"] = "accept-encoding"
        if coding:
            response.headers["content-encoding"] = coding
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response
