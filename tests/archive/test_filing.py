"""The filing rule, with values (server/archive/filing.py; docs/dicomweb.md "Filing and
reconciliation")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.archive.filing import (
    Aside,
    ExamFacts,
    Filed,
    Patient,
    Reason,
    Seen,
    decide,
    normalise_name,
    patient_conflicts,
)

LEROY = Patient("IPP-1", "LEROY^Émile", "19500101", "M")
MARTIN = Patient("IPP-2", "MARTIN^Jean", "19600202", "M")
EXAM1 = ExamFacts("e1", 1, "acquiring", "1.2.1", "ACC1", LEROY)
EXAM2 = ExamFacts("e2", 1, "delivered", "1.2.2", "ACC2", MARTIN)


def seen(study: str = "1.2.1", accession: str = "ACC1", patient: Patient = LEROY) -> Seen:
    return Seen(study, accession, patient)


def reason(outcome: Filed | Aside) -> Reason:
    assert isinstance(outcome, Aside), outcome
    return outcome.reason


def test_filed_when_everything_agrees() -> None:
    assert decide(seen(), [EXAM1, EXAM2]) == Filed(EXAM1, late=False)
    # An absent accession and absent patient values contradict nothing.
    assert decide(seen(accession="", patient=Patient()), [EXAM1]) == Filed(EXAM1)
    assert decide(seen(patient=Patient(name="leroy emile")), [EXAM1]) == Filed(EXAM1)


def test_late_series_after_the_report() -> None:
    assert decide(seen("1.2.2", "ACC2", MARTIN), [EXAM2]) == Filed(EXAM2, late=True)
    reported = replace(EXAM2, status="reported")
    assert decide(seen("1.2.2", "ACC2", MARTIN), [reported]) == Filed(reported, late=True)


def test_accession_of_another_exam_from_a_bound_upload() -> None:
    # LEROY's room (bound to exam 1), slices carrying MARTIN's accession.
    for study in ("1.2.1", "9.9.9", "1.2.2"):
        outcome = decide(seen(study, "ACC2", MARTIN), [EXAM1, EXAM2], bound=EXAM1)
        assert reason(outcome) == Reason.OTHER_EXAM
        assert outcome.candidate is None  # type: ignore[union-attr]


def test_accession_alone_never_files() -> None:
    # The modality's own StudyInstanceUID with an exam's accession: a person decides.
    outcome = decide(seen("9.9.9", "ACC2", MARTIN), [EXAM1, EXAM2])
    assert reason(outcome) == Reason.STUDY_UID_DIFFERS
    assert outcome.candidate == EXAM2  # type: ignore[union-attr]


def test_identifiers_naming_two_exams() -> None:
    assert reason(decide(seen("1.2.1", "ACC2"), [EXAM1, EXAM2])) == Reason.IDENTIFIERS_DISAGREE
    # An accession naming no exam beside the exam's UID.
    assert reason(decide(seen("1.2.1", "OTHER"), [EXAM1])) == Reason.ACCESSION_DIFFERS


def test_bound_upload_with_another_study_uid() -> None:
    outcome = decide(seen("9.9.9", "ACC1"), [EXAM1], bound=EXAM1)
    assert reason(outcome) == Reason.STUDY_UID_DIFFERS
    assert outcome.candidate == EXAM1  # type: ignore[union-attr]
    assert decide(seen(), [EXAM1], bound=EXAM1) == Filed(EXAM1)


def test_unknown_and_elsewhere_are_the_same_answer() -> None:
    # The caller's exams are all decide sees: an exam at another site is absent.
    unknown = decide(seen("7.7.7", "ACC9"), [])
    assert unknown == Aside(Reason.NO_EXAM, unknown.message)  # type: ignore[union-attr]
    assert decide(seen("1.2.1", "ACC9"), []) == unknown


@pytest.mark.parametrize(
    ("status", "expected"),
    [("cancelled", Reason.EXAM_CANCELLED), ("requested", Reason.EXAM_NOT_ACCEPTED)],
)
def test_exams_that_take_no_images(status: str, expected: Reason) -> None:
    exam = replace(EXAM1, status=status)
    outcome = decide(seen(), [exam])
    assert reason(outcome) == expected and outcome.candidate == exam  # type: ignore[union-attr]


def test_patient_mismatch() -> None:
    outcome = decide(seen(patient=MARTIN), [EXAM1], bound=EXAM1)
    assert reason(outcome) == Reason.PATIENT_MISMATCH
    assert "PatientID" in outcome.message and "PatientBirthDate" in outcome.message  # type: ignore[union-attr]


def test_patient_comparison() -> None:
    assert normalise_name("LEROY^Émile^^^") == "leroy emile"
    assert normalise_name("Leroy  Emile=ルロワ") == "leroy emile"
    assert patient_conflicts(Patient(name="leroy^EMILE"), LEROY) == []
    assert patient_conflicts(Patient(birth_date="1950-01-01", sex="m"), LEROY) == []
    assert patient_conflicts(Patient("IPP-1 ", sex="F"), LEROY) == ["PatientSex"]
    assert patient_conflicts(Patient(name="LEROY^Emilie"), LEROY) == ["PatientName"]
