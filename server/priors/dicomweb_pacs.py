"""A hospital PACS over DICOMweb (PS3.18): the patient's studies searched with
QIDO-RS (10.6, study and series level), a study retrieved with WADO-RS (10.4,
``multipart/related; type="application/dicom"``), each instance checked as it comes
like a C-GET's (``pacs.Checker``).

The same answers as ``server.priors.pacs`` (``Study``, ``Retrieved``, ``PacsError``
with the same codes where they mean the same thing), so the job does not tell the two
apart. Blocking (httpx's client): the job calls these with ``asyncio.to_thread``.
docs/priors.md "DICOMweb".
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from server.priors import pacs

#: The DICOM JSON tags asked for (PS3.18 F.2) and read back.
PATIENT_ID, ISSUER = "00100020", "00100021"
STUDY_UID, STUDY_DATE, ACCESSION = "0020000D", "00080020", "00080050"
MODALITIES, DESCRIPTION = "00080061", "00081030"
MODALITY, BODY_PART = "00080060", "00180015"
#: One instance of a prior is a few MB at most; a part over this is refused.
MAX_PART_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where the DICOMweb PACS is and how we authenticate to it."""

    url: str
    auth: str = "none"  # none | basic | bearer
    user: str | None = None
    secret: str | None = None
    ca_file: str | None = None
    timeout_s: float = 30.0

    @property
    def name(self) -> str:
        """How the audit names it: its root without credentials."""
        parsed = httpx.URL(self.url)
        return str(parsed.copy_with(username=None, password=None))[:64]


@contextmanager
def _client(ep: Endpoint) -> Iterator[httpx.Client]:
    verify: ssl.SSLContext | bool = True
    if ep.ca_file:
        try:
            verify = ssl.create_default_context(cafile=ep.ca_file)
        except OSError as exc:
            raise pacs.PacsError("tls_failed", f"cannot read the CA file: {exc}") from None
    headers = {}
    auth: httpx.BasicAuth | None = None
    if ep.auth == "bearer" and ep.secret:
        headers["Authorization"] = f"Bearer {ep.secret}"
    elif ep.auth == "basic" and ep.user is not None:
        auth = httpx.BasicAuth(ep.user, ep.secret or "")
    timeout = httpx.Timeout(ep.timeout_s, connect=min(ep.timeout_s, 10.0))
    with httpx.Client(
        base_url=ep.url.rstrip("/"), verify=verify, auth=auth, headers=headers, timeout=timeout
    ) as client:
        try:
            yield client
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc):
                raise pacs.PacsError(
                    "tls_failed", f"the PACS's TLS certificate is not trusted ({exc})"
                ) from None
            raise pacs.PacsError("unreachable", f"the PACS at {ep.url} does not answer") from None
        except httpx.TimeoutException:
            raise pacs.PacsError("no_answer", "the PACS stopped answering") from None
        except httpx.TransportError as exc:
            raise pacs.PacsError("no_answer", f"the PACS broke the connection ({exc})") from None


def _refused(resp: httpx.Response, code: str, what: str) -> pacs.PacsError:
    if resp.status_code in (401, 403):
        return pacs.PacsError(
            "unauthorized", f"the PACS refused our credentials (HTTP {resp.status_code})"
        )
    return pacs.PacsError(code, f"the PACS refused the {what} (HTTP {resp.status_code})")


def _value(item: dict[str, Any], tag: str) -> list[Any]:
    value = item.get(tag, {}).get("Value") or []
    return list(value) if isinstance(value, list) else []


def _text(item: dict[str, Any], tag: str) -> str:
    value = _value(item, tag)
    return str(value[0]).strip() if value and value[0] is not None else ""


def _search(
    client: httpx.Client, path: str, params: dict[str, str], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One QIDO-RS search (PS3.18 10.6): 204 or an empty array is no match. One
    ``includefield`` per attribute (PS3.18 8.3.4.3 allows a comma-separated list too,
    but not every PACS reads it: Orthanc's plugin takes only the first)."""
    query = httpx.QueryParams([*params.items(), *(("includefield", tag) for tag in fields)])
    resp = client.get(path, params=query, headers={"Accept": "application/dicom+json"})
    if resp.status_code == 204:
        return []
    if resp.status_code != 200:
        raise _refused(resp, "query_failed", "query")
    try:
        body = resp.json()
    except ValueError:
        raise pacs.PacsError("query_failed", "the PACS answered the query with no JSON") from None
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise pacs.PacsError("query_failed", "the PACS's answer is not a DICOM JSON array")
    return body


def find_studies(ep: Endpoint, query: pacs.Query, date_range: str) -> list[pacs.Study]:
    """The patient's studies in ``date_range`` (PS3.18 8.3.4: QIDO-RS takes DICOM's
    range matching), each with its series' body parts (a series-level search per
    study). IssuerOfPatientID is not sent as a filter (Orthanc's plugin, for one,
    matches nothing with it): an answer naming another issuer than the one queried is
    left out, one naming none is kept, and its instances' issuer is checked as they
    come (``pacs.Checker``)."""
    params = {"PatientID": query.patient_id, "StudyDate": date_range}
    fields = (ISSUER, ACCESSION, MODALITIES, DESCRIPTION)
    studies: list[pacs.Study] = []
    with _client(ep) as client:
        for item in _search(client, "/studies", params, fields):
            uid = _text(item, STUDY_UID)
            issuer = _text(item, ISSUER)
            if not uid or (query.issuer is not None and issuer and issuer != query.issuer):
                continue
            series = _search(client, f"/studies/{uid}/series", {}, (MODALITY, BODY_PART))
            studies.append(
                pacs.Study(
                    study_uid=uid,
                    patient_id=_text(item, PATIENT_ID),
                    study_date=_text(item, STUDY_DATE),
                    accession_number=_text(item, ACCESSION),
                    modalities=tuple(str(m) for m in _value(item, MODALITIES) if m)
                    or tuple(sorted({_text(s, MODALITY) for s in series} - {""})),
                    description=_text(item, DESCRIPTION),
                    body_parts=tuple(sorted({_text(s, BODY_PART).upper() for s in series} - {""})),
                )
            )
    return studies


class _Parts:
    """The parts of a WADO-RS answer, each handed whole to the checker as it ends."""

    def __init__(self, check: pacs.Checker) -> None:
        self.check = check
        self.chunks: list[bytes] = []
        self.size = 0

    def begin(self) -> None:
        self.chunks, self.size = [], 0

    def data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.size > MAX_PART_BYTES:
            raise pacs.PacsError("retrieve_failed", "an instance of the study is too large")
        self.chunks.append(bytes(data[start:end]))

    def end(self) -> None:
        self.check(b"".join(self.chunks))
        self.chunks, self.size = [], 0


def _boundary(content_type: str) -> str:
    kind, _, rest = content_type.partition(";")
    if kind.strip().lower() != "multipart/related":
        raise pacs.PacsError("retrieve_failed", f"the PACS answered {kind or 'nothing'}")
    for param in rest.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"')
    raise pacs.PacsError("retrieve_failed", "the PACS's multipart answer has no boundary")


def get_study(ep: Endpoint, study_uid: str, query: pacs.Query, sink: pacs.Sink) -> pacs.Retrieved:
    """WADO-RS of one study (PS3.18 10.4.1.1.1), the instances in the transfer syntax
    the PACS holds them in (``transfer-syntax=*``, PS3.18 8.7.3.5.2); each checked
    (``pacs.Checker``) and, if kept, written to ``sink`` as it ends."""
    check = pacs.Checker(study_uid, query, sink)
    parts = _Parts(check)
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with (
        _client(ep) as client,
        client.stream("GET", f"/studies/{study_uid}", headers={"Accept": accept}) as resp,
    ):
        if resp.status_code in (204, 404):  # no such study there
            return check.retrieved
        if resp.status_code != 200:
            raise _refused(resp, "retrieve_failed", "retrieval")
        parser = MultipartParser(
            _boundary(resp.headers.get("content-type", "")).encode("latin-1"),
            {"on_part_begin": parts.begin, "on_part_data": parts.data, "on_part_end": parts.end},
        )
        try:
            for chunk in resp.iter_bytes():
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise pacs.PacsError(
                "retrieve_failed", f"the PACS's multipart answer is malformed ({exc})"
            ) from None
    return check.retrieved
