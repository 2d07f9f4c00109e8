"""Coercing an instance kept aside to the exam a person files it into
(docs/dicomweb.md "Filing and reconciliation").

The patient identity, StudyInstanceUID and AccessionNumber become the exam's; the
values received are kept in an item of Original Attributes Sequence (0400,0561)
per PS3.3 C.12.1: Modified Attributes Sequence holds them as they were (an
attribute that was absent is listed with no value, PS3.3 C.12.1.1.9.2),
with the date and time, the modifying system and the reason ``COERCE``
(``dicomweb.identity.modify``, which the corrections of a patient's identity use too).
Everything else, pixel data included, is written back unchanged in its transfer
syntax.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from pydicom import dcmread

from dicomweb.identity import COERCE, modify


@dataclass(frozen=True)
class Identity:
    """The exam's values, as DICOM writes them (PN with ``^``, DA as YYYYMMDD)."""

    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_uid: str
    accession_number: str

    def attributes(self) -> dict[str, str]:
        return {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "PatientBirthDate": self.patient_birth_date,
            "PatientSex": self.patient_sex,
            "StudyInstanceUID": self.study_uid,
            "AccessionNumber": self.accession_number,
        }


def coerce(data: bytes, identity: Identity, at: datetime) -> bytes:
    """``data`` (Part 10) with ``identity`` applied and the originals kept. Blocking."""
    ds = dcmread(io.BytesIO(data))
    modify(ds, identity.attributes(), at.strftime("%Y%m%d%H%M%S.%f%z"), COERCE)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
