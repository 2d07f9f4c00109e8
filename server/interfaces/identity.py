"""The patient as the documents we send name them (docs/hl7.md "Outbound", docs/fhir.md).

Every outgoing document (ORU, CDA, FHIR Patient) reads the patient through
:func:`document_patient` and nowhere else, so that the identity rules of the
national identity referential (INS: an INS is sent only for a qualified identity)
live in one place. An exam linked to an identity the hospital sent
(docs/patients.md) is named by that identity: its strict traits, its status and,
when qualified, its INS. An exam typed in the form with no identity is named by
its own columns: the IPP the site gave, a provisional identity, no INS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from server.core.models import Exam
from server.patients.service import INS_NIA as INS_NIA_OID
from server.patients.service import INS_NIR as INS_NIR_OID

__all__ = ["INS_NIA_OID", "INS_NIR_OID", "DocumentPatient", "document_patient"]


@dataclass(frozen=True)
class DocumentPatient:
    """What a document says of its patient."""

    establishment_id: int
    ipp: str
    birth_name: str
    first_names: str
    sex: str  # M, F or U
    birth_date: date
    identity_status: str = "provisional"  # provisional | recovered | validated | qualified
    ins: str | None = None
    ins_oid: str | None = None
    used_name: str | None = None
    used_first_name: str | None = None
    birthplace_code: str | None = None

    @property
    def qualified_ins(self) -> tuple[str, str] | None:
        """(matricule, OID) when the INS may be sent: a qualified identity only."""
        if self.identity_status == "qualified" and self.ins and self.ins_oid:
            return self.ins, self.ins_oid
        return None

    @property
    def first_name(self) -> str:
        """The first of the first names (the one a document shows first)."""
        return self.first_names.split(" ")[0] if self.first_names else ""


def document_patient(exam: Exam) -> DocumentPatient:
    """The exam's patient for a document: its linked identity when there is one,
    else the exam's columns, whose name is a DICOM person name (``FAMILY^Given
    names``, PS3.5 6.2)."""
    identity = exam.patient_identity
    if identity is not None:
        return DocumentPatient(
            establishment_id=identity.establishment_id,
            ipp=identity.ipp,
            birth_name=identity.birth_name,
            first_names=identity.first_names,
            sex=identity.sex if identity.sex in ("M", "F") else "U",
            birth_date=identity.birth_date,
            identity_status=identity.identity_status,
            ins=identity.ins,
            ins_oid=identity.ins_oid,
            used_name=identity.used_name,
            used_first_name=identity.used_first_name,
            birthplace_code=identity.birthplace_code,
        )
    family, _, given = exam.patient_name.partition("^")
    return DocumentPatient(
        establishment_id=exam.establishment_id,
        ipp=exam.patient_id,
        birth_name=family.strip(),
        first_names=given.replace("^", " ").strip(),
        sex=exam.patient_sex if exam.patient_sex in ("M", "F") else "U",
        birth_date=exam.patient_birth_date,
    )
