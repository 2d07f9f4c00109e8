"""Coercing an instance kept aside to its exam (server/archive/coercion.py, PS3.3 C.12.1)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from pydicom import dcmread

from dicomweb.samples import instance
from server.archive.coercion import Identity, coerce

EXAM = Identity("IPP-1", "LEROY^Emile", "19500101", "M", "1.2.3.4", "ACC1")


def test_identity_replaced_and_originals_kept() -> None:
    sent = dcmread(io.BytesIO(instance(PatientID="X", PatientName="MARTIN^Jean")))
    del sent.AccessionNumber
    buf = io.BytesIO()
    sent.save_as(buf, enforce_file_format=True)
    at = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    got = dcmread(io.BytesIO(coerce(buf.getvalue(), EXAM, at)))
    assert (got.PatientID, str(got.PatientName), got.StudyInstanceUID) == (
        "IPP-1",
        "LEROY^Emile",
        "1.2.3.4",
    )
    assert got.AccessionNumber == "ACC1" and got.PatientSex == "M"
    [item] = got.OriginalAttributesSequence
    [before] = item.ModifiedAttributesSequence
    assert before.PatientID == "X" and str(before.PatientName) == "MARTIN^Jean"
    assert before.StudyInstanceUID == sent.StudyInstanceUID
    assert "AccessionNumber" in before and not before.AccessionNumber  # was absent
    assert item.ReasonForTheAttributeModification == "COERCE"
    assert item.ModifyingSystem == "TELEIMAGERIE"
    assert item.AttributeModificationDateTime.startswith("20261206070000")
    # Nothing else changes: same instance, same pixels.
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert np.array_equal(got.pixel_array, sent.pixel_array)


def test_nothing_to_change_adds_no_item() -> None:
    data = instance(
        study=EXAM.study_uid,
        PatientID="IPP-1",
        PatientName="LEROY^Emile",
        PatientBirthDate="19500101",
        PatientSex="M",
        AccessionNumber="ACC1",
    )
    got = dcmread(io.BytesIO(coerce(data, EXAM, datetime.now(UTC))))
    assert "OriginalAttributesSequence" not in got
