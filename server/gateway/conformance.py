"""What the gateway accepts and answers (docs/gateway.md is the conformance
statement): SOP classes, transfer syntaxes, and DIMSE statuses for ingest
failures. Pure data and one pure function."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EncapsulatedPDFStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    MRImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayRadiationDoseSRStorage,
)

from dicomweb.types import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    Failure,
)

# pydicom's UID constants rather than pynetdicom.sop_class's, whose names are made
# at import time where a type checker cannot see them; pynetdicom keeps only the
# UID of a supported context, so the negotiation is the same.
# UIDs: PS3.6 Annex A.
VERIFICATION = UID("1.2.840.10008.1.1")
MODALITY_WORKLIST_FIND = UID("1.2.840.10008.5.1.4.31")
STORAGE_CLASSES: tuple[UID, ...] = (
    CTImageStorage,
    EnhancedCTImageStorage,
    MRImageStorage,
    EnhancedMRImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    EncapsulatedPDFStorage,
    # Scanners send their dose report at the end of the exam; refusing it shows
    # as an error on the console.
    XRayRadiationDoseSRStorage,
)
# Pixel data is stored as received: only syntaxes the archive can index and
# render (pydicom + pylibjpeg codecs) are accepted.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

SUCCESS = 0x0000
# PS3.4 B.2.3 warning "Coercion of Data Elements": an instance kept aside for a
# person to file (its identifiers then become the exam's). Stored, not lost.
COERCION = 0xB000
SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.7 C.5.x general status
# PS3.7 Annex C "Refused: Not Authorized": the instance names no exam of the
# calling site in a state that takes images. Same code STOW-RS reports.
REFUSED_NOT_AUTHORIZED = NOT_AUTHORIZED
KNOWN_FAILURES = {OUT_OF_RESOURCES, DATA_SET_MISMATCH, CANNOT_UNDERSTAND, NOT_AUTHORIZED}
# C-FIND (PS3.4 C.4.1.1.4)
FIND_PENDING = 0xFF00
FIND_CANCEL = 0xFE00
FIND_UNABLE_TO_PROCESS = 0xC000


def store_status(failure: Failure) -> int:
    """The C-STORE status (PS3.4 B.2.3) for an ingest failure. The archive's
    reasons are already PS3.4 codes; anything else is "cannot understand"."""
    if failure.reason in KNOWN_FAILURES:
        return failure.reason
    if 0xA700 <= failure.reason <= 0xA7FF:
        return OUT_OF_RESOURCES
    if 0xA900 <= failure.reason <= 0xA9FF:
        return DATA_SET_MISMATCH
    return CANNOT_UNDERSTAND
