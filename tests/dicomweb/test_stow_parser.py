"""The STOW-RS multipart parser (PS3.18 10.5, RFC 2046 5.1) under crafted bodies: the
boundary rules, oversized part headers, and a property test that whatever body,
boundary and part headers come, the answer is a store response or a clear 4xx, never a
5xx. Against a live archive on the run's database; bounded and derandomized."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomweb.samples import instance
from dicomweb.stow import MAX_BOUNDARY, check_boundary
from dicomweb.types import DicomwebError
from tests.dicomweb.conftest import Archive

STORE_STATUSES = {200, 202, 409}  # PS3.18 10.5.3: all, some, none stored


@pytest.mark.parametrize(
    "boundary",
    ["0f3c9e2d8b7a4c5e9d1f2a3b4c5d6e7f", "===============5829467723816954302==", "a'()+_,-./:=? b"],
)
def test_boundaries_rfc2046_allows(boundary: str) -> None:
    check_boundary(boundary)
    check_boundary("b" * MAX_BOUNDARY)


@pytest.mark.parametrize(
    "boundary", ["b" * 71, "b" * 5000, "ab ", "a\u00e9b", 'a"b', "a\tb", "a;b"]
)
def test_boundaries_rfc2046_forbids(boundary: str) -> None:
    with pytest.raises(DicomwebError) as caught:
        check_boundary(boundary)
    assert (caught.value.status, caught.value.code) == (400, "bad_boundary")


async def test_a_part_header_of_a_megabyte_is_refused(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    body = b"--xyz\r\nContent-Type: application/dicom\r\nX-Pad: " + b"a" * 1_000_000
    body += b"\r\n\r\n" + instance("CT_small.dcm") + b"\r\n--xyz--\r\n"
    ctype = 'multipart/related; type="application/dicom"; boundary=xyz'
    resp = await http.post("/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_multipart"
    assert not list(archive.storage.rglob("*.dcm"))


BCHARS = "abcXYZ0189'()+_,-./:=? "
BOUNDARIES = st.one_of(
    st.text(st.sampled_from(BCHARS), min_size=1, max_size=80),
    # Anything a header value can carry (HTTP forbids control characters there).
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=["Cc"]),
        min_size=1,
        max_size=20,
    ),
    st.integers(min_value=60, max_value=6000).map(lambda n: "b" * n),
)
HEADER_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Content-Type: application/dicom",
                b"Content-Type: text/plain",
                b"Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                b'Content-Type: ;;;=="',
                b"Content-Type:",
                b"Content-Location: x",
                b"no colon here",
                b": empty name",
            ]
        ),
        st.binary(max_size=40).filter(lambda b: b"\r\n" not in b),
    ),
    max_size=3,
)
CT = instance("CT_small.dcm")
PAYLOADS = st.one_of(
    st.just(CT),
    st.integers(min_value=0, max_value=len(CT)).map(lambda n: CT[:n]),
    st.binary(max_size=300),
)


@st.composite
def stow_requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A body and its Content-Type: well-formed multipart, or broken in one of the
    ways a client or an attacker breaks it."""
    boundary = draw(BOUNDARIES)
    raw = boundary.encode("latin-1")
    chunks = [b"preamble\r\n"] if draw(st.booleans()) else []
    for headers, payload in draw(st.lists(st.tuples(HEADER_LINES, PAYLOADS), max_size=3)):
        head = b"".join(line + b"\r\n" for line in headers)
        chunks.append(b"--" + raw + b"\r\n" + head + b"\r\n" + payload + b"\r\n")
    if draw(st.booleans()):
        chunks.append(b"--" + raw + b"--\r\n")
    body = b"".join(chunks)
    if draw(st.booleans()):  # cut anywhere
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    quoted = b'"' + raw + b'"' if draw(st.booleans()) else raw
    ctype = draw(
        st.sampled_from(
            [
                b'multipart/related; type="application/dicom"; boundary=' + quoted,
                b"multipart/related; boundary=" + quoted,
                b'multipart/related; type="application/dicom"',
                b'multipart/related; type="application/dicom+json"; boundary=' + quoted,
                b"application/dicom",
            ]
        )
    )
    return body, ctype.rstrip()  # HTTP trims a header value's trailing blanks


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=stow_requests())
def test_any_stow_body_gets_a_store_response_or_a_clear_4xx(
    archive: Archive, request: tuple[bytes, bytes]
) -> None:
    body, ctype = request
    with httpx.Client(base_url=archive.url, timeout=30) as client:
        resp = client.post("/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code in STORE_STATUSES and "dicom+json" in resp.headers["content-type"]:
        return
    assert 400 <= resp.status_code < 500, resp.status_code
    error = resp.json()["error"]
    assert isinstance(error["code"], str) and error["message"]
