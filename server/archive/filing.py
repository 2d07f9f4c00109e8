"""Filing: which exam an incoming instance belongs to, or why a person must decide
(docs/dicomweb.md "Filing and reconciliation").

Pure, no I/O: the caller looks up the exams the uploader may act on whose
StudyInstanceUID or AccessionNumber the instance carries (and the exam the upload
is bound to, if any), and :func:`decide` answers :class:`Filed` or :class:`Aside`.

An instance is filed only when everything agrees: its StudyInstanceUID is the
exam's, its AccessionNumber (when present) is the exam's, the exam takes images
(accepted or later, not cancelled) and the patient in the header does not
contradict the exam's patient (PatientID, PatientName, PatientBirthDate,
PatientSex; an absent value contradicts nothing). An upload bound to an exam (a
STOW to ``/studies/{uid}`` of that exam, the platform storing into one exam) is
filed there or nowhere. The archive keys studies by StudyInstanceUID, so never
filing under a UID that is not the exam's own keeps one exam's study from being
taken by another's instances, whatever the uploader sees.

Only exams the uploader may act on are ever considered: an instance naming an
exam elsewhere gets exactly the answer of an instance naming nothing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from rooms.types import ExamStatus

#: Late images: the report is written already; they are filed and announced as such.
LATE = frozenset({ExamStatus.REPORTED, ExamStatus.DELIVERED})


class Reason(StrEnum):
    """Why an instance is kept aside; the code the uploader and the queue show."""

    NO_EXAM = "no_exam"
    STUDY_UID_DIFFERS = "study_uid_differs"
    ACCESSION_DIFFERS = "accession_differs"
    IDENTIFIERS_DISAGREE = "identifiers_disagree"
    OTHER_EXAM = "other_exam"
    PATIENT_MISMATCH = "patient_mismatch"
    EXAM_NOT_ACCEPTED = "exam_not_accepted"
    EXAM_CANCELLED = "exam_cancelled"


MESSAGES = {
    Reason.NO_EXAM: "its StudyInstanceUID and AccessionNumber name none of your exams",
    Reason.STUDY_UID_DIFFERS: "its StudyInstanceUID is not the exam's",
    Reason.ACCESSION_DIFFERS: "its AccessionNumber is not the exam's",
    Reason.IDENTIFIERS_DISAGREE: "its StudyInstanceUID and AccessionNumber name different exams",
    Reason.OTHER_EXAM: "its identifiers name another exam than the one it was sent to",
    Reason.PATIENT_MISMATCH: "its patient differs from the exam's patient",
    Reason.EXAM_NOT_ACCEPTED: "the exam is not accepted yet",
    Reason.EXAM_CANCELLED: "the exam is cancelled",
}


@dataclass(frozen=True)
class Patient:
    """Patient attributes as DICOM writes them (PN with ``^``, DA as YYYYMMDD)."""

    id: str = ""
    name: str = ""
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True)
class ExamFacts:
    """What filing needs of an exam."""

    id: str
    establishment_id: int
    status: str
    study_uid: str
    accession: str
    patient: Patient


@dataclass(frozen=True)
class Seen:
    """What filing reads of an instance's header."""

    study_uid: str
    accession: str
    patient: Patient


@dataclass(frozen=True)
class Filed:
    exam: ExamFacts
    late: bool = False


@dataclass(frozen=True)
class Aside:
    reason: Reason
    message: str
    candidate: ExamFacts | None = None


def normalise_name(value: str) -> str:
    """A person name for comparison: the alphabetic group of a PN (PS3.5 6.2.1),
    accents, case, ``^`` and spaces ignored; empty components dropped."""
    alphabetic = value.split("=", 1)[0]
    decomposed = unicodedata.normalize("NFKD", alphabetic)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = plain.casefold().replace("^", " ").replace(",", " ").split()
    return " ".join(words)


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def patient_conflicts(seen: Patient, exam: Patient) -> list[str]:
    """The attributes of ``seen`` that contradict ``exam`` (absent values never do)."""
    out = []
    if seen.id.strip() and exam.id.strip() and seen.id.strip() != exam.id.strip():
        out.append("PatientID")
    if seen.name.strip() and exam.name.strip():
        if normalise_name(seen.name) != normalise_name(exam.name):
            out.append("PatientName")
    if _digits(seen.birth_date) and _digits(exam.birth_date):
        if _digits(seen.birth_date) != _digits(exam.birth_date):
            out.append("PatientBirthDate")
    if seen.sex.strip() and exam.sex.strip() and seen.sex.strip().upper() != exam.sex.upper():
        out.append("PatientSex")
    return out


def _aside(reason: Reason, candidate: ExamFacts | None = None, detail: str = "") -> Aside:
    message = MESSAGES[reason] + (f" ({detail})" if detail else "")
    return Aside(reason, message, candidate)


def decide(seen: Seen, exams: Iterable[ExamFacts], bound: ExamFacts | None = None) -> Filed | Aside:
    """File ``seen`` into one of ``exams`` (those the uploader may act on that its
    identifiers name), or into ``bound`` (the exam the upload is bound to, itself
    one the uploader may act on), or say why not."""
    known = list(exams)
    by_uid = next((e for e in known if e.study_uid == seen.study_uid), None)
    by_accession = (
        next((e for e in known if e.accession == seen.accession), None) if seen.accession else None
    )
    if bound is not None:
        named = {e.id for e in (by_uid, by_accession) if e is not None}
        if named - {bound.id}:
            return _aside(Reason.OTHER_EXAM)
        exam = bound
        if seen.study_uid != exam.study_uid:
            return _aside(Reason.STUDY_UID_DIFFERS, exam)
    else:
        if by_uid is not None and by_accession is not None and by_uid.id != by_accession.id:
            return _aside(Reason.IDENTIFIERS_DISAGREE)
        if by_uid is None:
            if by_accession is not None:
                return _aside(Reason.STUDY_UID_DIFFERS, by_accession)
            return _aside(Reason.NO_EXAM)
        exam = by_uid
    if seen.accession and seen.accession != exam.accession:
        return _aside(Reason.ACCESSION_DIFFERS, exam)
    if exam.status == ExamStatus.CANCELLED:
        return _aside(Reason.EXAM_CANCELLED, exam)
    if exam.status == ExamStatus.REQUESTED:
        return _aside(Reason.EXAM_NOT_ACCEPTED, exam)
    conflicts = patient_conflicts(seen.patient, exam.patient)
    if conflicts:
        return _aside(Reason.PATIENT_MISMATCH, exam, ", ".join(conflicts))
    return Filed(exam, late=exam.status in LATE)
