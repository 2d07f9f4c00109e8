"""Exam requests: validation, creation, the event log, and the JSON shape."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydicom.uid import generate_uid
from sqlalchemy import Table, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from rooms import escalation
from rooms.escalation import ExamSnapshot, Policy
from rooms.permissions import commands_for
from rooms.types import EventKind, ExamStatus, Role
from server.core.config import Settings
from server.core.errors import ApiError, conflict
from server.core.identity import Person
from server.core.models import Exam, ExamEvent, PatientIdentity, User, new_id
from server.exams.stroke import stroke_json
from server.patients.service import dicom_name, identity_json

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Patient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[Text, StringConstraints(max_length=64)]
    name: Annotated[Text, StringConstraints(max_length=200)]
    birth_date: date
    sex: Literal["F", "M", "O", "U"]
    # An identity received from the hospital (GET /api/patients): the exam is linked
    # to it and shows its strict traits (docs/patients.md).
    identity_id: int | None = None

    @field_validator("birth_date")
    @classmethod
    def _not_in_future(cls, value: date) -> date:
        if value > date.today():
            raise ValueError("birth date is in the future")
        return value


class StrokeAlert(BaseModel):
    """A stroke alert (docs/stroke.md): the time of onset, or of the patient last seen
    well when nobody saw it begin; ``unknown`` (no time) when the order that raised it
    gave none (docs/hl7.md "Stroke orders")."""

    model_config = ConfigDict(extra="forbid")

    onset_at: AwareDatetime | None = None
    onset_kind: Literal["witnessed", "last_seen_well", "unknown"]

    @model_validator(mode="after")
    def _a_time_unless_unknown(self) -> StrokeAlert:
        if (self.onset_kind == "unknown") != (self.onset_at is None):
            raise ValueError("onset_at is required, unless onset_kind is unknown (then none)")
        return self


# A clock a little ahead of the server's is accepted; an onset older than this is a typo.
STROKE_CLOCK_SKEW = timedelta(minutes=2)
STROKE_OLDEST_ONSET = timedelta(days=7)


def check_onset(onset_at: datetime, now: datetime) -> None:
    """A stroke alert's onset must be plausible at the time of the request: 422
    ``invalid_fields`` on ``stroke.onset_at`` otherwise, and nothing is created."""
    problem = None
    if onset_at > now + STROKE_CLOCK_SKEW:
        problem = "onset is in the future"
    elif onset_at < now - STROKE_OLDEST_ONSET:
        problem = "onset is more than 7 days ago"
    if problem:
        raise ApiError(
            422,
            "invalid_fields",
            f"invalid or missing fields: stroke.onset_at ({problem})",
            fields=[{"field": "stroke.onset_at", "message": problem}],
        )


class ExamRequest(BaseModel):
    """The content of a French teleradiology request (G4/FNMR-SFR charter):
    identity, clinical question, exam asked for, urgency, contraindications,
    and the patient informed and consenting."""

    model_config = ConfigDict(extra="forbid")

    patient: Patient
    modality: Literal["CT", "MR", "CR", "DX"]
    body_part: Annotated[Text, StringConstraints(max_length=64)]
    clinical_question: Annotated[Text, StringConstraints(max_length=4000)]
    urgency: Literal["emergency", "urgent", "scheduled"]
    consent: bool
    contraindications: Annotated[str, StringConstraints(max_length=2000)] | None = None
    stroke: StrokeAlert | None = None

    @field_validator("consent")
    @classmethod
    def _consent_given(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("the patient must be informed and consenting")
        return value

    @field_validator("stroke")
    @classmethod
    def _stroke_is_an_emergency_ct_or_mri(
        cls, value: StrokeAlert | None, info: ValidationInfo
    ) -> StrokeAlert | None:
        # Declared after `modality` and `urgency`, so both are in `info.data` when valid.
        if value is not None:
            if info.data.get("urgency") != "emergency":
                raise ValueError("a stroke alert is an emergency")
            if info.data.get("modality") not in ("CT", "MR"):
                raise ValueError("a stroke alert asks for a CT or an MRI")
        return value


def new_accession(now: datetime) -> str:
    """``TI`` + YYMMDD + 8 random digits: 16 characters, DICOM SH-sized."""
    return f"TI{now:%y%m%d}{secrets.randbelow(10**8):08d}"


def new_study_uid(root: str) -> str:
    return str(generate_uid(prefix=None if root == "2.25" else root.rstrip(".") + "."))


async def linked_request(
    db: AsyncSession, establishment_id: int, req: ExamRequest
) -> tuple[ExamRequest, int | None]:
    """A request naming a received identity (``patient.identity_id``) shows that
    identity's strict traits, whatever was typed: the identity must be one of the
    requester's establishment and not merged away (docs/patients.md)."""
    wanted = req.patient.identity_id
    if wanted is None:
        return req, None
    row = await db.get(PatientIdentity, wanted)
    if row is None or row.establishment_id != establishment_id or row.merged_into_id is not None:
        raise ApiError(
            422,
            "invalid_fields",
            "unknown patient identity",
            fields=[{"field": "patient.identity_id", "message": "no such identity here"}],
        )
    patient = req.patient.model_copy(
        update={
            "id": row.ipp,
            "name": dicom_name(row)[:200],
            "birth_date": row.birth_date,
            "sex": row.sex,
        }
    )
    return req.model_copy(update={"patient": patient}), row.id


class Requester(Protocol):
    """Who requests an exam: a user, or an HL7 sender's interface account (its id and
    establishment are known without reading the row, docs/hl7.md "Orders")."""

    @property
    def id(self) -> int: ...

    @property
    def establishment_id(self) -> int | None: ...


async def create_exam(
    db: AsyncSession,
    settings: Settings,
    requester: Requester,
    req: ExamRequest,
    now: datetime,
    assigned_radiologist_id: int | None = None,
    *,
    identity_id: int | None = None,
    placer_order_number: str | None = None,
    batch: Requests | None = None,
) -> tuple[Exam, ExamEvent]:
    """Insert the exam and its ``exam.requested`` event (seq 1) in one transaction.

    ``identity_id`` links it to the identity received from the hospital (docs/patients.md)
    and ``placer_order_number`` keeps the number of the order it came from (docs/hl7.md).
    With ``batch``, the exam is the session's object at once and its rows are written
    with the batch's (:meth:`Requests.write`).
    """
    if req.stroke is not None and req.stroke.onset_at is not None:
        check_onset(req.stroke.onset_at, now)
    for _attempt in range(5):
        values, event = _drawn(
            settings, requester, req, now, assigned_radiologist_id, identity_id, placer_order_number
        )
        if batch is not None:
            batch.add(values, event)
            return _persistent(db, values), event
        if not await _insert_new(db, values):
            continue  # an accession number collided: draw again
        exam = _persistent(db, values)
        # Written with a statement built once, not flushed by the session: the event
        # is never changed once written (docs/rooms.md "Room protocol").
        await db.execute(_INSERT_EVENT, _event_row(event))
        return exam, event
    raise RuntimeError("could not draw a unique accession number")


def _drawn(
    settings: Settings,
    requester: Requester,
    req: ExamRequest,
    now: datetime,
    assigned_radiologist_id: int | None,
    identity_id: int | None,
    placer_order_number: str | None,
) -> tuple[dict[str, Any], ExamEvent]:
    """The columns of a new exam (its numbers drawn) and its ``exam.requested`` event."""
    assert requester.establishment_id is not None
    values: dict[str, Any] = {
        "id": new_id(),
        "establishment_id": requester.establishment_id,
        "requester_id": requester.id,
        "assigned_radiologist_id": assigned_radiologist_id,
        "status": ExamStatus.REQUESTED,
        "accession_number": new_accession(now),
        "study_instance_uid": new_study_uid(settings.uid_root),
        "patient_id": req.patient.id,
        "patient_name": req.patient.name,
        "patient_birth_date": req.patient.birth_date,
        "patient_sex": req.patient.sex,
        "modality": req.modality,
        "body_part": req.body_part,
        "clinical_question": req.clinical_question,
        "urgency": req.urgency,
        "contraindications": req.contraindications or None,
        "consent": req.consent,
        "patient_identity_id": identity_id,
        "placer_order_number": placer_order_number,
        "stroke_onset_at": (
            req.stroke.onset_at.astimezone(UTC) if req.stroke and req.stroke.onset_at else None
        ),
        "stroke_onset_kind": req.stroke.onset_kind if req.stroke else None,
        "created_at": now,
        "updated_at": now,
        "last_seq": 1,
    }
    event = ExamEvent(
        id=new_id(),
        exam_id=values["id"],
        seq=1,
        kind=EventKind.EXAM_REQUESTED,
        author_id=requester.id,
        at=now,
        body={
            "modality": values["modality"],
            "body_part": values["body_part"],
            "urgency": values["urgency"],
            "accession_number": values["accession_number"],
            **({"placer_order_number": placer_order_number} if placer_order_number else {}),
            **(
                {
                    "stroke": stroke_json(
                        values["modality"],
                        values["stroke_onset_kind"],
                        values["stroke_onset_at"],
                        now,
                    )
                }
                if req.stroke
                else {}
            ),
        },
    )
    return values, event


class Requests:
    """New exams of one transaction written together (the orders at the head of a
    group, docs/hl7.md "Acknowledgements"): :func:`create_exam` with ``batch`` adds
    each, and :meth:`write` inserts the rows, then their events, one statement each.
    An accession number or a study UID drawn that is taken fails the insert (the
    caller applies its requests again, one by one, each with :func:`create_exam`)."""

    def __init__(self) -> None:
        self._exams: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []

    def add(self, values: dict[str, Any], event: ExamEvent) -> None:
        self._exams.append(values)
        self._events.append(_event_row(event))

    async def write(self, db: AsyncSession) -> None:
        if self._exams:
            await db.execute(_INSERT_EXAM, self._exams)
            await db.execute(_INSERT_EVENT, self._events)
        self._exams, self._events = [], []


def _event_row(event: ExamEvent) -> dict[str, Any]:
    return {column: getattr(event, column) for column in _EVENT_COLUMNS}


_EVENTS = ExamEvent.__table__
assert isinstance(_EVENTS, Table)
_EVENT_COLUMNS = tuple(column.key for column in _EVENTS.columns)
_INSERT_EVENT = insert(_EVENTS)
_EXAMS = Exam.__table__
assert isinstance(_EXAMS, Table)
_INSERT_EXAM = insert(_EXAMS)


#: Per dialect: ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL and
#: SQLite), built once (a statement built per call costs its cache key every time).
_INSERT_NEW = {
    dialect.dialect.name: dialect.insert(Exam).on_conflict_do_nothing().returning(Exam.id)
    for dialect in (postgresql, sqlite)
}


async def _insert_new(db: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the exam, or return False when the accession number or the study UID
    drawn is taken. One statement, where an insert that may fail needs a ``SAVEPOINT``
    and its ``RELEASE`` around it (a failed statement aborts a PostgreSQL transaction)."""
    stmt = _INSERT_NEW[db.get_bind().dialect.name]
    return (await db.execute(stmt, values)).scalar() is not None


def _persistent(db: AsyncSession, values: dict[str, Any]) -> Exam:
    """The row just inserted as the session's object, as a flush would leave it: the
    columns not given are NULL (no other column has a default)."""
    exam = Exam(**values)
    for column in Exam.__table__.columns:
        if column.key not in values:
            set_committed_value(exam, column.key, None)
    make_transient_to_detached(exam)
    db.add(exam)
    return exam


async def append_event(
    db: AsyncSession,
    exam_id: str,
    kind: str,
    author_id: int | None,
    body: dict[str, Any],
    now: datetime,
    *,
    client_id: str | None = None,
    from_status: tuple[str, ...] | None = None,
    changes: dict[str, Any] | None = None,
) -> ExamEvent:
    """Append one event with the exam's next seq, in the caller's transaction.

    The seq is taken by a single ``UPDATE ... RETURNING`` on the exam row,
    which also applies ``changes`` (a new status, a timestamp) and checks the
    exam is still in one of ``from_status``: concurrent writers queue on that
    row, so no two events share a seq and no state change is lost.
    """
    stmt = update(Exam).where(Exam.id == exam_id)
    if from_status is not None:
        stmt = stmt.where(Exam.status.in_(from_status))
    values: dict[str, Any] = {"last_seq": Exam.last_seq + 1, "updated_at": now}
    values.update(changes or {})
    seq = await db.scalar(
        stmt.values(**values).returning(Exam.last_seq).execution_options(synchronize_session=False)
    )
    if seq is None:
        raise conflict("the exam changed state meanwhile; reload it and try again")
    event = ExamEvent(
        exam_id=exam_id,
        seq=seq,
        kind=kind,
        author_id=author_id,
        client_id=client_id,
        at=now,
        body=body,
    )
    db.add(event)
    await db.flush()
    return event


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _person(user: User | Person | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "id": user.id,
        "display_name": user.display_name,
        "role": user.role,
        "professional_id": user.professional_id,
    }


def escalation_policy(settings: Settings) -> Policy:
    """The escalation delays of the configuration (docs/configuration.md)."""
    return Policy(
        ack_timeout_s=settings.ack_timeout_s,
        report_warn_s=settings.report_warn_s,
        report_sla_s=settings.report_sla_s,
        protocol_ack_timeout_s=settings.protocol_ack_timeout_s,
        critical_ack_timeout_s=settings.critical_ack_timeout_s,
        stroke_ack_timeout_s=settings.stroke_ack_timeout_s,
        stroke_protocol_ack_timeout_s=settings.stroke_protocol_ack_timeout_s,
        stroke_report_warn_s=settings.stroke_report_warn_s,
        stroke_report_sla_s=settings.stroke_report_sla_s,
    )


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def escalation_snapshot(
    exam: Exam,
    signed: dict[str, Any] | None = None,
    signed_at: datetime | None = None,
    communicated: bool = False,
) -> ExamSnapshot:
    """What the escalation policy needs of an exam. The critical flag is in the
    ``report.signed`` event's body (`signed`), which the exam row does not hold; a
    critical result is acknowledged once delivered, or once `communicated` by a
    logged phone call (a ``critical.communicated`` event, docs/stroke.md)."""
    critical = bool((signed or {}).get("critical"))
    return ExamSnapshot(
        exam_id=exam.id,
        status=ExamStatus(exam.status),
        created_at=exam.created_at.timestamp(),
        accepted_at=_epoch(exam.accepted_at),
        protocoled_at=_epoch(exam.protocoled_at),
        protocol_ack_at=_epoch(exam.protocol_ack_at),
        images_complete_at=_epoch(exam.images_complete_at),
        reported_at=_epoch(exam.reported_at or signed_at),
        critical=critical,
        critical_acknowledged=communicated or exam.status == ExamStatus.DELIVERED,
        stroke=exam.stroke_onset_kind is not None,
    )


def deadlines(exam: Exam, settings: Settings) -> dict[str, str | None]:
    """The exam JSON's ``deadlines``: those of `rooms.escalation` a client shows
    (docs/rooms.md "The exam object"), so a countdown ends when its escalation fires."""
    try:
        pending = escalation.deadlines(escalation_snapshot(exam), escalation_policy(settings))
    except ValueError:  # a status without its timestamp: nothing is timed (nor raised)
        pending = []
    return {
        name: None if at is None else _ts(datetime.fromtimestamp(at, UTC))
        for name, at in escalation.shown(pending).items()
    }


def exam_json(exam: Exam, settings: Settings, viewer: Role | str | None = None) -> dict[str, Any]:
    """An exam as the API and the room send it (docs/rooms.md "The exam object").

    With `viewer` (the role of the user it is sent to) it carries ``commands``, the
    lifecycle commands that user may issue now (`rooms.permissions.commands_for`);
    without (a notification fanned out to several users) it has none.
    """
    body: dict[str, Any] = {
        "id": exam.id,
        "status": exam.status,
        "accession_number": exam.accession_number,
        "study_instance_uid": exam.study_instance_uid,
        "establishment": {"code": exam.establishment.code, "name": exam.establishment.name},
        "requester": _person(exam.requester),
        "assigned_radiologist": _person(exam.assigned_radiologist),
        "patient": {
            "id": exam.patient_id,
            "name": exam.patient_name,
            "birth_date": exam.patient_birth_date.isoformat(),
            "sex": exam.patient_sex,
            "identity": identity_json(exam.patient_identity) if exam.patient_identity else None,
        },
        "placer_order_number": exam.placer_order_number,
        "modality": exam.modality,
        "body_part": exam.body_part,
        "clinical_question": exam.clinical_question,
        "urgency": exam.urgency,
        "contraindications": exam.contraindications,
        "consent": exam.consent,
        "stroke": stroke_json(
            exam.modality, exam.stroke_onset_kind, exam.stroke_onset_at, exam.created_at
        ),
        "protocol": (
            {"id": exam.protocol_id, "text": exam.protocol_text} if exam.protocol_text else None
        ),
        "cancel_reason": exam.cancel_reason,
        "times": {
            "requested_at": _ts(exam.created_at),
            "accepted_at": _ts(exam.accepted_at),
            "protocoled_at": _ts(exam.protocoled_at),
            "protocol_acknowledged_at": _ts(exam.protocol_ack_at),
            "images_complete_at": _ts(exam.images_complete_at),
            "reported_at": _ts(exam.reported_at),
            "delivered_at": _ts(exam.delivered_at),
            "cancelled_at": _ts(exam.cancelled_at),
            "updated_at": _ts(exam.updated_at),
        },
        "deadlines": deadlines(exam, settings),
        "last_seq": exam.last_seq,
    }
    if viewer is not None:
        body["commands"] = [str(c) for c in commands_for(viewer, exam.status)]
    return body


def event_json(event: ExamEvent, author: User | Person | None = None) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "id": event.client_id or event.id,
        "kind": event.kind,
        "author": _person(author)
        if author
        else ({"id": event.author_id} if event.author_id is not None else None),
        "at": _ts(event.at),
        "body": event.body,
    }
