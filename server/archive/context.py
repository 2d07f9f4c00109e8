"""The context of a process that runs the archive (the web process, the modality
gateway): the core services, and the archive built over them (server/archive/service.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from dicomweb.ingest import Ingestor
from server.archive.images import ImageEvents
from server.core.context import AppContext

# An ASGI application: scope, receive, send (the web layer mounts it).
Asgi = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


@dataclass
class ArchiveContext(AppContext):
    # The DICOMweb archive (mounted at /dicomweb), its ingest path (STOW-RS, the
    # gateway's C-STORE, signed reports, filing from the queue), and the hook that
    # announces stored images in exam rooms.
    archive: Asgi
    ingestor: Ingestor
    images: ImageEvents
