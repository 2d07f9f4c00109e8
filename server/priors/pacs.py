"""A hospital PACS as a DICOM query/retrieve SCP (PS3.4 Annex C), seen from us as
the SCU: C-FIND at study and series level, C-GET of one study (PS3.4 C.4.3), the
instances received as C-STORE sub-operations on the same association.

Blocking (pynetdicom runs the association in threads): the job calls these
functions with ``asyncio.to_thread``. Every failure is a :class:`PacsError` with a
short code and a sentence the room shows (docs/priors.md "States").
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset, dcmread, uid
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ

log = logging.getLogger("teleimagerie.priors")

# pydicom's UID constants rather than pynetdicom.sop_class's, whose names a type
# checker cannot see (made at import time). PS3.6 Annex A; PS3.4 C.6.2.
FIND = uid.UID("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Query/Retrieve - FIND
GET = uid.UID("1.2.840.10008.5.1.4.1.2.2.3")  # Study Root Query/Retrieve - GET
# The image and document classes a prior is made of; with C-FIND and C-GET they fit
# the 128 presentation contexts an association may propose (PS3.8 9.3.2.2).
STORAGE = (
    uid.CTImageStorage,
    uid.EnhancedCTImageStorage,
    uid.MRImageStorage,
    uid.EnhancedMRImageStorage,
    uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation,
    uid.DigitalXRayImageStorageForProcessing,
    uid.DigitalMammographyXRayImageStorageForPresentation,
    uid.UltrasoundImageStorage,
    uid.UltrasoundMultiFrameImageStorage,
    uid.XRayAngiographicImageStorage,
    uid.NuclearMedicineImageStorage,
    uid.PositronEmissionTomographyImageStorage,
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.GrayscaleSoftcopyPresentationStateStorage,
    uid.KeyObjectSelectionDocumentStorage,
    uid.BasicTextSRStorage,
    uid.EnhancedSRStorage,
    uid.ComprehensiveSRStorage,
    uid.XRayRadiationDoseSRStorage,
    uid.EncapsulatedPDFStorage,
)
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)
SUCCESS = 0x0000
# C-STORE "Error: cannot understand" (PS3.4 Annex B.2.3, Cxxx): an instance of
# another patient than the one queried is refused, not stored.
REFUSED_PATIENT = 0xC001
OUT_OF_RESOURCES = 0xA700


class PacsError(Exception):
    """Why the PACS gave nothing: ``code`` for programs, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Peer:
    """Where the PACS is and who we are to it."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Query:
    """The patient as the PACS knows them: an identifier and, for the INS, its
    issuer (PS3.3 C.7.1.1, Issuer of Patient ID)."""

    patient_id: str
    issuer: str | None = None


@dataclass(frozen=True)
class Study:
    """One study-level C-FIND answer (PS3.4 C.6.2.1.2, Study Root)."""

    study_uid: str
    patient_id: str
    study_date: str
    accession_number: str
    modalities: tuple[str, ...]
    description: str
    body_parts: tuple[str, ...] = ()


@dataclass
class Retrieved:
    """What a C-GET brought: how many instances went to the sink, how many were
    refused because they name another patient or study, how many could not be read
    or written."""

    kept: int = 0
    mismatched: int = 0
    failed: int = 0


def make_ae(peer: Peer) -> AE:
    ae = AE(ae_title=peer.calling_ae_title)
    ae.acse_timeout = peer.timeout_s
    ae.dimse_timeout = peer.timeout_s
    ae.network_timeout = peer.timeout_s
    ae.connection_timeout = min(peer.timeout_s, 10.0)
    return ae


def _reachable(peer: Peer) -> None:
    """A TCP connection to the PACS, closed at once, before the association: pynetdicom
    (2.1) leaves the socket of a refused connection open, and a PACS that is down is
    said so in plain words rather than as an aborted association."""
    try:
        socket.create_connection((peer.host, peer.port), timeout=min(peer.timeout_s, 10.0)).close()
    except OSError as exc:
        raise PacsError(
            "unreachable",
            f"the PACS at {peer.host}:{peer.port} does not answer ({exc.strerror or exc})",
        ) from None


#: A-ASSOCIATE-RJ reasons (PS3.8 9.3.4, source DUL service-user) in words.
REJECTIONS = {
    0x02: "our calling AE title is not recognised",
    0x03: "our calling AE title is not recognised",
    0x07: "the called AE title is not the PACS's",
}


def associate(
    ae: AE, peer: Peer, handlers: list[evt.EventHandlerType] | None = None, **kwargs: Any
) -> Association:
    _reachable(peer)
    # The A-ASSOCIATE-RJ as it came off the wire: a PACS that closes the connection
    # right after its rejection can make pynetdicom report an abort instead (the
    # closed socket reaches its state machine before the rejection does).
    rejections: list[A_ASSOCIATE_RJ] = []

    def on_pdu(event: evt.Event) -> None:
        pdu = event.pdu
        if isinstance(pdu, A_ASSOCIATE_RJ):
            rejections.append(pdu)

    assoc = ae.associate(
        peer.host,
        peer.port,
        ae_title=peer.ae_title,
        evt_handlers=[*(handlers or []), (evt.EVT_PDU_RECV, on_pdu)],
        **kwargs,
    )
    if assoc.is_established:
        return assoc
    if assoc.is_rejected or rejections:
        primitive = assoc.acceptor.primitive
        diagnostic = getattr(primitive, "diagnostic", None)
        if diagnostic is None and rejections:
            diagnostic = rejections[0].reason_diagnostic
        why = REJECTIONS.get(int(diagnostic) if diagnostic is not None else -1, "no reason given")
        raise PacsError("association_rejected", f"the PACS refused the association: {why}")
    if assoc.acceptor.primitive is None:  # no A-ASSOCIATE-AC nor -RJ ever came
        raise PacsError(
            "no_association", "the PACS closed the connection without answering the association"
        )
    raise PacsError("association_aborted", "the PACS aborted the association")


def _find(assoc: Association, identifier: Dataset) -> list[Dataset]:
    found: list[Dataset] = []
    for status, answer in assoc.send_c_find(identifier, FIND):
        if not status:  # no status: the DIMSE timeout expired or the link went away
            raise PacsError("no_answer", "the PACS stopped answering the query")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01) and answer is not None:
            found.append(answer)
        elif code != SUCCESS:
            raise PacsError("query_failed", f"the PACS refused the query (status 0x{code:04X})")
    return found


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _many(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split("\\") if v.strip())
    return tuple(str(v).strip() for v in value if str(v).strip())


def find_studies(peer: Peer, query: Query, date_range: str) -> list[Study]:
    """The patient's studies in ``date_range`` (``YYYYMMDD-YYYYMMDD``, PS3.4
    C.2.2.2.5), each with the body parts of its series (a series-level C-FIND
    per study: BodyPartExamined is a series attribute, PS3.3 C.7.3.1)."""
    ae = make_ae(peer)
    ae.add_requested_context(FIND)
    assoc = associate(ae, peer)
    try:
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.PatientID = query.patient_id
        if query.issuer:
            ident.IssuerOfPatientID = query.issuer
        ident.StudyDate = date_range
        ident.StudyInstanceUID = ""
        ident.AccessionNumber = ""
        ident.ModalitiesInStudy = ""
        ident.StudyDescription = ""
        answers = _find(assoc, ident)
        studies: list[Study] = []
        for a in answers:
            uid = _text(a, "StudyInstanceUID")
            if not uid:
                continue
            series = Dataset()
            series.QueryRetrieveLevel = "SERIES"
            series.StudyInstanceUID = uid
            series.SeriesInstanceUID = ""
            series.Modality = ""
            series.BodyPartExamined = ""
            parts = _find(assoc, series)
            studies.append(
                Study(
                    study_uid=uid,
                    patient_id=_text(a, "PatientID"),
                    study_date=_text(a, "StudyDate"),
                    accession_number=_text(a, "AccessionNumber"),
                    modalities=_many(a, "ModalitiesInStudy")
                    or tuple(sorted({_text(s, "Modality") for s in parts} - {""})),
                    description=_text(a, "StudyDescription"),
                    body_parts=tuple(
                        sorted({_text(s, "BodyPartExamined").upper() for s in parts} - {""})
                    ),
                )
            )
        return studies
    finally:
        assoc.release()


#: Writes one received instance's Part-10 bytes somewhere; returns what to store.
Sink = Callable[[bytes], Any]


class Checker:
    """Checks each instance of one study as it comes, whatever brought it (C-GET,
    C-MOVE, WADO-RS): its StudyInstanceUID must be the one asked for, its PatientID the
    one queried, and for a query by the INS its IssuerOfPatientID the INS authority.
    The ones that pass go to ``sink``; the others are counted (``retrieved``), and a
    C-STORE status for the sender is returned (PS3.4 Annex B.2.3). Thread-safe: the
    instances of a C-MOVE may come on more than one association."""

    def __init__(self, study_uid: str, query: Query, sink: Sink) -> None:
        self.study_uid = study_uid
        self.query = query
        self.sink = sink
        self.retrieved = Retrieved()
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> int | Dataset:
        try:
            head = dcmread(
                io.BytesIO(data),
                stop_before_pixels=True,
                specific_tags=["PatientID", "IssuerOfPatientID", "StudyInstanceUID"],
            )
        except Exception:
            with self._lock:
                self.retrieved.failed += 1
            return store_status(0xC000, "cannot read the data set")
        query = self.query
        issuer_differs = (
            query.issuer is not None and _text(head, "IssuerOfPatientID") != query.issuer
        )
        if (
            _text(head, "StudyInstanceUID") != self.study_uid
            or _text(head, "PatientID") != query.patient_id
            or issuer_differs
        ):
            with self._lock:
                self.retrieved.mismatched += 1
            return store_status(REFUSED_PATIENT, "not the patient or study asked for")
        try:
            self.sink(data)
        except OSError:
            with self._lock:
                self.retrieved.failed += 1
            return store_status(OUT_OF_RESOURCES, "cannot write")
        with self._lock:
            self.retrieved.kept += 1
        return SUCCESS


def get_study(peer: Peer, study_uid: str, query: Query, sink: Sink) -> Retrieved:
    """C-GET of one study (PS3.4 C.4.3), each instance received checked before it is
    kept (:class:`Checker`); the kept ones go to ``sink``."""
    check = Checker(study_uid, query, sink)
    retrieved = check.retrieved
    ae = make_ae(peer)
    ae.add_requested_context(GET)
    for storage in STORAGE:
        ae.add_requested_context(storage, list(TRANSFER_SYNTAXES))
    roles = [build_role(storage, scp_role=True) for storage in STORAGE]

    def on_store(event: evt.Event) -> int | Dataset:
        return check(event.encoded_dataset(include_meta=True))

    assoc = associate(ae, peer, [(evt.EVT_C_STORE, on_store)], ext_neg=roles)
    try:
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        final_status(assoc.send_c_get(ident, GET), retrieved)
        return retrieved
    finally:
        if assoc.is_established:
            assoc.release()


#: C-MOVE "Refused: Move Destination unknown" (PS3.4 C.4.2.1.5).
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS = (
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)


def final_status(
    responses: Iterable[tuple[Dataset, Dataset | None]],
    retrieved: Retrieved,
    move_to: str | None = None,
) -> int:
    """The last status of a C-GET or C-MOVE (PS3.4 C.4.2.1.5, C.4.3.1.4); a failure
    is a :class:`PacsError`, unless we refused instances ourselves (the counts say).
    A C-MOVE (``move_to``: our destination's AE title) refused before any
    sub-operation is ``move_refused``: the PACS does not know our destination, or will
    not send to it (Orthanc answers 0xC000 there, not 0xA801)."""
    final = None
    for status, _ident in responses:
        if not status:  # the DIMSE timeout expired or the link went away
            raise PacsError("no_answer", "the PACS stopped answering the retrieval")
        final = status
    if final is None:
        raise PacsError("no_answer", "the PACS did not answer the retrieval")
    code = int(final.Status)
    # 0xB000: some sub-operations failed (ours refused, or theirs); the counts say.
    if code in (SUCCESS, 0xB000) or retrieved.mismatched:
        return code
    done = sum(int(final.get(keyword) or 0) for keyword in SUB_OPERATIONS)
    if move_to is not None and (
        code == MOVE_DESTINATION_UNKNOWN or (done == 0 and not retrieved.kept)
    ):
        known = "does not know" if code == MOVE_DESTINATION_UNKNOWN else "refused to send to"
        raise PacsError(
            "move_refused",
            f"the PACS {known} our C-MOVE destination {move_to} (status 0x{code:04X}): "
            "it must be among its DICOM modalities, with our host and port",
        )
    raise PacsError("retrieve_failed", f"the PACS could not send the study (status 0x{code:04X})")


def store_status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status
