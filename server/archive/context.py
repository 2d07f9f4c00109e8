"""The context of a process that runs the archive (the web process, the modality
gateway): the core services, and the archive built over them (server/archive/service.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dicomweb.ingest import Ingestor
from server.archive.images import ImageEvents
from server.core.context import AppContext

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection


@dataclass
class ArchiveContext(AppContext):
    # The DICOMweb archive (mounted at /dicomweb), its ingest path (STOW-RS, the
    # gateway's C-STORE, signed reports, filing from the queue), and the hook that
    # announces stored images in exam rooms.
    archive: Starlette
    ingestor: Ingestor
    images: ImageEvents


def archive_ctx(conn: HTTPConnection) -> ArchiveContext:
    """The context of the process serving this request: one that runs the archive."""
    context: ArchiveContext = conn.app.state.ctx
    return context
