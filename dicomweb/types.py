"""Wire and interface types of the DICOMweb archive, in one place (docs/dicomweb.md).

The server implements :class:`Access` (sessions, exam scoping) and
:class:`IngestHooks` (room events); this package never imports the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import ColumnElement
from starlette.requests import HTTPConnection

#: Whatever the server's ``Access.authenticate`` returns; opaque to this package.
Principal = Any

# PS3.4 Annex B / PS3.18 Table 10.5.3-1 failure reasons (FailureReason, 0008,1197).
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_CLASS = 0x0112
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


class DicomwebError(Exception):
    """An HTTP error with a machine-readable code, rendered as
    ``{"error": {"code", "message"}}`` like the rest of the API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


#: An instance in the index whose file is not in the storage.
MISSING_FILE = DicomwebError(
    500,
    "stored_file_missing",
    "an image of this request is indexed but its file is missing from the archive's storage",
)


@dataclass(frozen=True)
class DicomwebConfig:
    """Settings of the archive sub-application.

    ``public_base_url``: the absolute URL the archive is reachable at (e.g.
    ``https://pacs.example.org/dicomweb``). When None, URLs in responses
    (RetrieveURL, BulkDataURI, Content-Location) are built from the request's
    scheme and host (docs/dicomweb.md "URLs").
    ``mount_path``: where the server mounts the app, used for URLs made outside a
    request (ingest hooks for C-STORE) when there is no public base URL.
    ``keep_cached``: how many bytes of the newest stored files stay in the page
    cache for their first read (``Storage.placed``); 0 drops each file at once.
    """

    storage_root: Path
    max_body_bytes: int = 2 * 1024**3
    public_base_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    mount_path: str = "/dicomweb"
    thumbnail_size: int = 128
    #: Bytes of the newest stored files kept in the page cache (``Storage.placed``).
    keep_cached: int = 1024 * 1024 * 1024

    def base_url(self, root_path: str | None = None) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return (root_path if root_path is not None else self.mount_path).rstrip("/")


@dataclass(frozen=True)
class InstanceAttrs:
    """What ``Access.authorize_store`` sees of an incoming instance (its header only)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    accession_number: str
    patient_id: str
    patient_name: str
    modality: str
    patient_birth_date: str = ""
    patient_sex: str = ""
    #: The study of a ``POST /studies/{study}`` (the upload is bound to it), else None.
    expected_study: str | None = None


@dataclass(frozen=True)
class StoreTarget:
    """Where an authorised instance belongs; recorded on the study row."""

    exam_id: str | None = None
    establishment_id: int | None = None


@dataclass(frozen=True)
class KeepAside:
    """``authorize_store``'s third answer: store the bytes, but not in the
    archive; a person decides where the instance belongs (docs/dicomweb.md
    "Filing and reconciliation"). ``reason`` is a short code, ``message`` says it
    in words; ``context`` is the Access's own, handed back to ``keep_aside``."""

    reason: str
    message: str
    context: Any = None


@dataclass(frozen=True)
class KeptAside:
    """The result of an instance kept aside: its bytes are safe in the storage's
    quarantine area, not indexed (no QIDO, no WADO) until a person files it.
    PS3.18 10.5.3: reported in ReferencedSOPSequence with WarningReason B000
    (its identifying attributes will be coerced to the exam's when filed)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    reason: str
    message: str
    item_id: str


@dataclass(frozen=True)
class StoredInstance:
    """The result of a successful store, handed to ``IngestHooks.on_stored``."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    exam_id: str | None
    establishment_id: int | None
    series_instance_count: int
    thumbnail_url: str
    retrieve_url: str
    duplicate: bool = False


@dataclass(frozen=True)
class Failure:
    """A per-instance failure (PS3.18 10.5.3, FailedSOPSequence)."""

    reason: int
    message: str
    sop_class_uid: str | None = None
    sop_uid: str | None = None


@runtime_checkable
class Access(Protocol):
    """Who may see and store what. The server implements it with its sessions."""

    async def authenticate(self, request: HTTPConnection) -> Principal:
        """Return the caller, or raise ``DicomwebError(401, ...)``."""
        ...

    def study_filter(self, principal: Principal) -> ColumnElement[bool] | None:
        """An SQL condition on ``dicomweb.tables.studies`` limiting what the caller
        sees (None: everything)."""
        ...

    async def authorize_store(
        self, principal: Principal, attrs: InstanceAttrs
    ) -> StoreTarget | KeepAside | None:
        """May the caller store this instance? None: failure 0x0124. KeepAside:
        the bytes go to the quarantine area and the Access's ``keep_aside``
        (required then) records them.

        An Access may also have ``store_key(principal, attrs) -> Hashable | None``:
        what that answer depends on. The instances of one ingest batch with the
        same key then share one ``authorize_store`` call (a series is one call,
        not one per slice); None, or no such method, asks for every instance.

        ``keep_aside(principal, kept: list[Quarantined]) -> list[str]``: record
        instances kept aside (already in the quarantine area), in one go; returns
        their item ids. Should it raise, their files are removed and each fails
        with A700: nothing is kept that nobody can find.

        ``study_identity(session, exam_id, stored) -> Mapping[str, str] | None``:
        called in the index transaction before a new study row of that exam is
        written, with the patient columns the instance would give it (``patient_id``,
        ``patient_name``, ``patient_birth_date``, ``patient_sex``). It answers the
        columns to write instead when the exam's patient identity is another one
        now (corrected between the filing decision and this transaction); the row
        is then marked corrected (dicomweb/identity.py). It reads the exam under a
        shared lock, so that a correction and the first instances of a study are
        ordered one after the other."""
        ...


@dataclass(frozen=True)
class Quarantined:
    """One instance handed to ``Access.keep_aside``: what ``authorize_store``
    saw and answered, and where its bytes are (relative to the storage root)."""

    attrs: InstanceAttrs
    decision: KeepAside
    path: str
    size: int


@runtime_checkable
class IngestHooks(Protocol):
    async def on_stored(self, stored: StoredInstance) -> None:
        """Called once per newly stored instance, after its rows are committed."""
        ...
