"""The vendored viewer modules as served (server/web/vendor.py, docs/frontend.md "The
vendored Cornerstone3D"): precompressed copies with their Content-Encoding, hashed names
kept for good, the fixed names revalidated."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from dicomweb.http import accepted_codings
from server.web.vendor import IMMUTABLE

VENDOR = Path(__file__).resolve().parents[2] / "frontend" / "vendor" / "cornerstone"
MODULE = re.compile(r'"\./(cornerstone-[A-Z2-7]{8}\.js)"')


def bundle_name() -> str:
    found = MODULE.search((VENDOR / "cornerstone.js").read_text())
    assert found, "cornerstone.js names no hashed bundle"
    return found.group(1)


def disk(name: str) -> bytes:
    """A vendored file's bytes, by its path under frontend/vendor/cornerstone/."""
    return (VENDOR / name).read_bytes()


def unbrotli(data: bytes) -> bytes:
    """Brotli decoded by Node's zlib (Python's standard library has no brotli; the build
    that wrote these copies needs Node anyway)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node to decode brotli")
    script = (
        "process.stdout.write(require('zlib').brotliDecompressSync(require('fs').readFileSync(0)))"
    )
    run = subprocess.run([node, "-e", script], input=data, capture_output=True, check=True)
    return run.stdout


async def raw_get(
    http: httpx.AsyncClient, path: str, **headers: str
) -> tuple[httpx.Response, bytes]:
    """The response and its body as sent (not decoded by httpx)."""
    async with http.stream("GET", path, headers=headers) as resp:
        body = b"".join([part async for part in resp.aiter_raw()])
    return resp, body


def test_accept_encoding_read_with_its_weights() -> None:
    assert accepted_codings("gzip, deflate, br, zstd") == {"gzip", "deflate", "br", "zstd"}
    assert accepted_codings("br;q=0, gzip;q=0.5") == {"gzip"}
    assert accepted_codings("") == set()
    assert accepted_codings("gzip;q=x, br") == {"br"}


def test_the_bundles_name_is_its_contents_hash() -> None:
    """What the browser keeps for a year must change name when its bytes change."""
    name = bundle_name()
    digest = hashlib.sha256((VENDOR / name).read_bytes()).digest()
    assert name == f"cornerstone-{base64.b32encode(digest).decode()[:8]}.js"


def vendored() -> list[Path]:
    """The modules and decoders that have compressed copies (the build skips those under 1 kB)."""
    sources = [p for p in VENDOR.rglob("*") if p.suffix in (".js", ".wasm")]
    return [p for p in sources if p.stat().st_size >= 1024]


def test_every_gzip_copy_is_its_file() -> None:
    assert vendored(), "no vendored module"
    for path in vendored():
        assert gzip.decompress(Path(f"{path}.gz").read_bytes()) == path.read_bytes(), path.name


def test_every_brotli_copy_is_its_file() -> None:
    for path in vendored():
        assert unbrotli(Path(f"{path}.br").read_bytes()) == path.read_bytes(), path.name


async def test_hashed_bundle_immutable_and_compressed(http: httpx.AsyncClient) -> None:
    name = bundle_name()
    raw = disk(name)
    path = f"/vendor/cornerstone/{name}"

    resp, body = await raw_get(http, path, **{"accept-encoding": "gzip, deflate, br"})
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "br"
    assert resp.headers["content-type"].startswith("text/javascript")
    assert resp.headers["cache-control"] == IMMUTABLE
    assert resp.headers["vary"] == "accept-encoding"
    assert resp.headers["content-security-policy"].startswith("default-src 'self'")
    assert body == disk(f"{name}.br")
    assert int(resp.headers["content-length"]) == len(body) < len(raw) // 4

    resp, body = await raw_get(http, path, **{"accept-encoding": "br;q=0, gzip"})
    assert resp.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == raw

    resp, body = await raw_get(http, path, **{"accept-encoding": "identity"})
    assert "content-encoding" not in resp.headers
    assert body == raw

    # Each coding is its own representation: its own ETag, a 304 for it.
    etag = (await raw_get(http, path, **{"accept-encoding": "gzip"}))[0].headers["etag"]
    again, body = await raw_get(http, path, **{"accept-encoding": "gzip", "if-none-match": etag})
    assert again.status_code == 304 and body == b""
    assert again.headers["cache-control"] == IMMUTABLE
    identity = (await raw_get(http, path, **{"accept-encoding": "identity"}))[0].headers["etag"]
    assert identity != etag


async def test_fixed_names_revalidated(http: httpx.AsyncClient) -> None:
    """cornerstone.js (names the bundle) and the WebAssembly decoders keep their names
    from one build to the next: a browser asks each time, a 304 when unchanged."""
    wasm_path = "/vendor/cornerstone/wasm/openjpegwasm_decode.wasm"
    for path in ("/vendor/cornerstone/cornerstone.js", wasm_path):
        first, _ = await raw_get(http, path, **{"accept-encoding": "gzip"})
        assert first.status_code == 200
        assert first.headers["cache-control"] == "no-cache"
        again, _ = await raw_get(
            http, path, **{"accept-encoding": "gzip", "if-none-match": first.headers["etag"]}
        )
        assert again.status_code == 304
    wasm, body = await raw_get(http, wasm_path, **{"accept-encoding": "gzip"})
    assert wasm.headers["content-type"] == "application/wasm"
    assert wasm.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == disk("wasm/openjpegwasm_decode.wasm")


async def test_missing_vendor_file_is_404(http: httpx.AsyncClient) -> None:
    resp = await http.get("/vendor/cornerstone/nothing-AAAAAAAA.js")
    assert resp.status_code == 404
