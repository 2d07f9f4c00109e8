"""DICOMweb archive (DICOM PS3.18): STOW-RS, QIDO-RS, WADO-RS over a local store.

Imports nothing of ours; the server mounts :func:`create_dicomweb_app` and
implements :class:`Access` and :class:`IngestHooks`.
"""

from dicomweb.app import create_dicomweb_app
from dicomweb.ingest import Ingestor
from dicomweb.tables import metadata
from dicomweb.types import (
    Access,
    DicomwebConfig,
    DicomwebError,
    Failure,
    IngestHooks,
    InstanceAttrs,
    Principal,
    StoredInstance,
    StoreTarget,
)

__all__ = [
    "Access",
    "DicomwebConfig",
    "DicomwebError",
    "Failure",
    "IngestHooks",
    "Ingestor",
    "InstanceAttrs",
    "Principal",
    "StoreTarget",
    "StoredInstance",
    "create_dicomweb_app",
    "metadata",
]
