"""The patient as the documents we send name them (docs/hl7.md "Outbound", docs/fhir.md).

Every outgoing document (ORU, CDA, FHIR Patient) reads the patient through
:func:`document_patient` and nowhere else, so that the identity rules of the
national identity referential (INS: an INS is sent only for a qualified identity)
live in one place. Until the identity model of docs/hl7.md "Inbound" is there,
the patient comes from the exam's own columns: the IPP the site gave, a
provisional identity, no INS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from server.core.models import Exam

# The OIDs of the INS (Référentiel national d'identitovigilance, annex "OID").
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_TEST_OIDS = frozenset({"1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})


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
    """The exam's patient for a document. The exam's name is a DICOM person name
    (``FAMILY^Given names``, PS3.5 6.2)."""
    family, _, given = exam.patient_name.partition("^")
    return DocumentPatient(
        establishment_id=exam.establishment_id,
        ipp=exam.patient_id,
        birth_name=family.strip(),
        first_names=given.replace("^", " ").strip(),
        sex=exam.patient_sex if exam.patient_sex in ("M", "F") else "U",
        birth_date=exam.patient_birth_date,
    )
