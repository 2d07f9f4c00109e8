"""Modality Worklist (PS3.4 K.6, SOP class 1.2.840.10008.5.1.4.31): the exam
requests of one establishment as Scheduled Procedure Steps.

Loading is async (:func:`scheduled`); building answers and matching a C-FIND
identifier (PS3.4 C.2.2.2) are pure functions on pydicom datasets, so they are
tested with values. The exams of a site are few (the active ones only), so the
matching runs here rather than in SQL: one code path on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from sqlalchemy import select

from rooms.types import ExamStatus
from server.core.context import AppContext
from server.core.models import Exam
from server.exams import protocols

# A worklist shows what is to be done. Requested exams are included so the
# radiographer on call sees the patient as soon as the urgentist asks, before
# the radiologist has accepted; images sent that early are refused by the
# archive (0x0124) until the exam is accepted, as for STOW-RS.
SCHEDULED = (
    ExamStatus.REQUESTED,
    ExamStatus.ACCEPTED,
    ExamStatus.PROTOCOLED,
    ExamStatus.ACQUIRING,
)
# Modalities show local time; the platform serves French sites.
SITE_TIMEZONE = ZoneInfo("Europe/Paris")
PRIORITY = {"emergency": "STAT", "urgent": "HIGH", "scheduled": "ROUTINE"}
UTF8 = "ISO_IR 192"


@dataclass(frozen=True)
class WorkItem:
    """What the worklist needs of an exam, detached from the ORM session."""

    accession_number: str
    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: date
    patient_sex: str
    modality: str
    body_part: str
    urgency: str
    procedure: str
    requester: str
    created_at: datetime


async def scheduled(app: AppContext, establishment_id: int) -> list[WorkItem]:
    """The establishment's exams waiting for images, oldest first."""
    async with app.read() as db:
        exams = (
            await db.scalars(
                select(Exam)
                .where(Exam.establishment_id == establishment_id, Exam.status.in_(SCHEDULED))
                .order_by(Exam.created_at)
            )
        ).all()
        return [_item(exam) for exam in exams]


def _item(exam: Exam) -> WorkItem:
    protocol = protocols.find(exam.protocol_id) if exam.protocol_id else None
    procedure = protocol["title"] if protocol else f"{exam.modality} {exam.body_part}"
    return WorkItem(
        accession_number=exam.accession_number,
        study_uid=exam.study_instance_uid,
        patient_id=exam.patient_id,
        patient_name=exam.patient_name,
        patient_birth_date=exam.patient_birth_date,
        patient_sex=exam.patient_sex,
        modality=exam.modality,
        body_part=exam.body_part,
        urgency=exam.urgency,
        procedure=procedure[:64],
        requester=exam.requester.display_name[:64],
        created_at=exam.created_at,
    )


def item_dataset(item: WorkItem, station_aet: str) -> Dataset:
    """Every attribute the gateway answers for one exam (PS3.4 Table K.6-1)."""
    local = item.created_at.astimezone(SITE_TIMEZONE)
    step = Dataset()
    step.Modality = item.modality
    step.ScheduledStationAETitle = station_aet
    step.ScheduledProcedureStepStartDate = local.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = local.strftime("%H%M%S")
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = item.procedure
    step.ScheduledProcedureStepID = item.accession_number
    step.ScheduledProcedureStepStatus = "SCHEDULED"
    ds = Dataset()
    ds.SpecificCharacterSet = UTF8
    ds.AccessionNumber = item.accession_number
    ds.ReferringPhysicianName = item.requester
    ds.PatientName = item.patient_name
    ds.PatientID = item.patient_id
    ds.PatientBirthDate = item.patient_birth_date.strftime("%Y%m%d")
    ds.PatientSex = item.patient_sex
    ds.StudyInstanceUID = item.study_uid
    ds.RequestedProcedureDescription = item.procedure
    ds.RequestedProcedureID = item.accession_number
    ds.RequestedProcedurePriority = PRIORITY.get(item.urgency, "ROUTINE")
    ds.BodyPartExamined = item.body_part[:16]
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def answers(items: list[WorkItem], query: Dataset, station_aet: str) -> list[Dataset]:
    """The C-FIND responses to ``query``: the matching items, each with exactly
    the keys asked for (PS3.4 C.2.2.1.1: return keys are the query's keys)."""
    out = []
    for item in items:
        full = item_dataset(item, station_aet)
        if matches(query, full):
            out.append(project(query, full))
    return out


def matches(query: Dataset, full: Dataset) -> bool:
    for elem in query:
        if elem.keyword == "SpecificCharacterSet" or elem.tag.group == 0x0002:
            continue
        have = full.get(elem.tag)
        if elem.VR == "SQ":
            # Sequence matching: every key of the query item matches the one item we have.
            if not elem.value:
                continue
            if have is None or not have.value:
                return False
            if not matches(elem.value[0], have.value[0]):
                return False
            continue
        if not _match_value(elem, have):
            return False
    return True


def project(query: Dataset, full: Dataset) -> Dataset:
    out = Dataset()
    out.SpecificCharacterSet = UTF8
    for elem in query:
        if elem.keyword == "SpecificCharacterSet" or elem.tag.group == 0x0002:
            continue
        have = full.get(elem.tag)
        if elem.VR == "SQ":
            if have is None or not have.value:
                out[elem.tag] = DataElement(elem.tag, "SQ", Sequence([]))
            elif not elem.value or len(elem.value[0]) == 0:
                out[elem.tag] = DataElement(elem.tag, "SQ", Sequence(list(have.value)))
            else:
                out[elem.tag] = DataElement(
                    elem.tag, "SQ", Sequence([project(elem.value[0], have.value[0])])
                )
                del out[elem.tag].value[0].SpecificCharacterSet
        elif have is not None:
            out[elem.tag] = have
        else:
            out[elem.tag] = DataElement(elem.tag, elem.VR, None)  # asked for, unknown here
    return out


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _match_value(elem: DataElement, have: DataElement | None) -> bool:
    want = _text(elem.value) if elem.VM <= 1 else "\\".join(_text(v) for v in elem.value)
    if want in ("", "*"):
        return True  # universal matching
    value = "" if have is None else _text(have.value)
    if elem.VR == "UI":
        return value in want.split("\\")  # list of UID matching
    if elem.VR in ("DA", "TM", "DT") and "-" in want:
        low, _, high = want.partition("-")
        key = _range_key(elem.VR, value)
        return (not low or key >= _range_key(elem.VR, low)) and (
            not high or key <= _range_key(elem.VR, high, upper=True)
        )
    if elem.VR in ("DA", "TM", "DT"):
        return _range_key(elem.VR, value) == _range_key(elem.VR, want)
    if "*" in want or "?" in want:
        pattern = re.escape(want).replace(r"\*", ".*").replace(r"\?", ".")
        flags = re.IGNORECASE if elem.VR == "PN" else 0
        return re.fullmatch(pattern, value, flags) is not None
    if elem.VR == "PN":
        return want.casefold() == value.casefold()
    return value == want


def _range_key(vr: str, value: str, upper: bool = False) -> str:
    digits = value.replace(":", "").replace(".", "").strip()
    if vr == "TM":
        digits = digits[:6]
        return digits.ljust(6, "9" if upper else "0")
    return digits
