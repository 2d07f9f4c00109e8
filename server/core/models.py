"""SQL models: the source of truth; Redis holds nothing they cannot rebuild
(docs/deployment.md "A region").

Every table added by a later feature gets its own Alembic migration in
``server/migrations/versions``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


def new_id() -> str:
    return str(uuid.uuid4())


class Establishment(Base):
    """A hospital site: the tenant boundary."""

    __tablename__ = "establishments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    finess: Mapped[str | None] = mapped_column(String(9))
    contract_active: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # NULL for the on-call centre's staff (radiologists, coordinators) and admins.
    establishment_id: Mapped[int | None] = mapped_column(ForeignKey("establishments.id"))
    display_name: Mapped[str] = mapped_column(String(200))
    professional_id: Mapped[str | None] = mapped_column(String(32))  # RPPS for physicians
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]

    establishment: Mapped[Establishment | None] = relationship(lazy="joined")


class UserSession(Base):
    """A login. Only the SHA-256 of the token is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    client_addr: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]


class PatientIdentity(Base):
    """A patient as an establishment's patient record system knows them
    (docs/hl7.md "Inbound", docs/patients.md): the local identifier (IPP), the
    national health identifier (INS) with its OID, how far the identity was
    checked, and the strict traits the identity-vigilance rules ask to show, kept
    apart from the used names. ``merged_into_id``: merged into that identity (A40)."""

    __tablename__ = "patient_identities"
    __table_args__ = (
        UniqueConstraint("establishment_id", "ipp"),
        Index("ix_patient_identities_establishment_ins", "establishment_id", "ins"),
        Index("ix_patient_identities_establishment_birth_name", "establishment_id", "birth_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    ipp: Mapped[str] = mapped_column(String(64))
    ins: Mapped[str | None] = mapped_column(String(15))
    ins_oid: Mapped[str | None] = mapped_column(String(64))
    identity_status: Mapped[str] = mapped_column(String(16))
    birth_name: Mapped[str] = mapped_column(String(100))
    first_names: Mapped[str] = mapped_column(String(200))
    used_name: Mapped[str | None] = mapped_column(String(100))
    used_first_name: Mapped[str | None] = mapped_column(String(100))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    birthplace_code: Mapped[str | None] = mapped_column(String(5))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient_identities.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Exam(Base):
    __tablename__ = "exams"
    __table_args__ = (
        Index("ix_exams_establishment_status", "establishment_id", "status"),
        Index("ix_exams_radiologist_status", "assigned_radiologist_id", "status"),
        Index("ix_exams_establishment_placer", "establishment_id", "placer_order_number"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_radiologist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(24))
    accession_number: Mapped[str] = mapped_column(String(16), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)

    patient_id: Mapped[str] = mapped_column(String(64))
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_birth_date: Mapped[date] = mapped_column(Date)
    patient_sex: Mapped[str] = mapped_column(String(1))
    # The identity received from the hospital's patient record (docs/hl7.md "Inbound"),
    # when the request came over HL7 or the form picked a received identity; the four
    # columns above keep what the request showed, updated on a merge.
    patient_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("patient_identities.id"), index=True
    )
    # ORC-2 of an order received over HL7: the placer's own number for it.
    placer_order_number: Mapped[str | None] = mapped_column(String(64))

    modality: Mapped[str] = mapped_column(String(4))
    body_part: Mapped[str] = mapped_column(String(64))
    clinical_question: Mapped[str] = mapped_column(Text)
    urgency: Mapped[str] = mapped_column(String(16))
    contraindications: Mapped[str | None] = mapped_column(Text)
    consent: Mapped[bool] = mapped_column(Boolean)

    # A stroke alert (docs/stroke.md): the time of onset, or the time the patient was
    # last seen well when onset was not witnessed ("witnessed" / "last_seen_well").
    stroke_onset_at: Mapped[datetime | None]
    stroke_onset_kind: Mapped[str | None] = mapped_column(String(16))
    # The figures of the scanner's Radiation Dose SR (server/archive/dose.py), when sent.
    radiation_dose: Mapped[dict[str, Any] | None]

    protocol_id: Mapped[str | None] = mapped_column(String(64))
    protocol_text: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    protocoled_at: Mapped[datetime | None]
    protocol_ack_at: Mapped[datetime | None]
    images_complete_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    # The seq of the newest event in this exam's log; bumped in the same UPDATE
    # that changes the state, so two writers can never take the same seq.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)

    establishment: Mapped[Establishment] = relationship(lazy="joined")
    requester: Mapped[User] = relationship(foreign_keys=[requester_id], lazy="joined")
    assigned_radiologist: Mapped[User | None] = relationship(
        foreign_keys=[assigned_radiologist_id], lazy="joined"
    )
    patient_identity: Mapped[PatientIdentity | None] = relationship(lazy="joined")


class ExamEvent(Base):
    """The append-only log of an exam room (docs/rooms.md "Room protocol")."""

    __tablename__ = "exam_events"
    __table_args__ = (
        UniqueConstraint("exam_id", "seq"),
        UniqueConstraint("exam_id", "client_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(48))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# -- Reconciliation queue (docs/dicomweb.md "Filing and reconciliation") ------


class ReconciliationItem(Base):
    """An instance kept aside instead of filed: its bytes wait in the storage's
    quarantine area (never indexed) until a radiographer of its establishment or a
    coordinator files it into an exam or discards it. ``establishment_id`` None:
    coordinators only."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        Index("ix_reconciliation_items_status_establishment", "status", "establishment_id"),
        Index("ix_reconciliation_items_series_uid", "series_uid"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    establishment_id: Mapped[int | None] = mapped_column(ForeignKey("establishments.id"))
    uploader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(64))  # "stow", "dicom:<calling AE>"
    received_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    accession_number: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str] = mapped_column(String(64))
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_birth_date: Mapped[str] = mapped_column(String(16))
    patient_sex: Mapped[str] = mapped_column(String(16))
    candidate_exam_id: Mapped[str | None] = mapped_column(ForeignKey("exams.id"))
    path: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None]
    filed_exam_id: Mapped[str | None] = mapped_column(ForeignKey("exams.id"))
    discard_reason: Mapped[str | None] = mapped_column(Text)


# -- Outbound interfaces (docs/hl7.md "Outbound") ------------------------------


class Hl7Destination(Base):
    """A hospital system that receives our reports over MLLP (its DPI, its
    intermediation platform): where, how, and which messages (``kinds``: ``oru``,
    ``mdm`` or both, comma-separated)."""

    __tablename__ = "hl7_destinations"
    __table_args__ = (UniqueConstraint("establishment_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    kinds: Mapped[str] = mapped_column(String(32))
    # MSH-5 and MSH-6 of what we send: the receiving application and facility.
    receiving_application: Mapped[str] = mapped_column(String(64))
    receiving_facility: Mapped[str] = mapped_column(String(64))
    # TLS: on when tls is true; a CA file to check the destination's certificate
    # (None: the system's), a client certificate and key when it asks for one.
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    tls_ca_file: Mapped[str | None] = mapped_column(String(255))
    tls_cert_file: Mapped[str | None] = mapped_column(String(255))
    tls_key_file: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class OutboxMessage(Base):
    """One message owed to one destination, written in the transaction of the
    change it reports (signature, addendum, cancellation) and sent by the worker
    until the destination acknowledges it. ``control_id`` (MSH-10) is drawn once and
    the text (``payload``) rendered once: every attempt sends the same bytes.
    ``next_attempt_at`` is also the lease of the worker sending it: a worker killed
    mid-send leaves a row that comes due again.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("destination_id", "exam_id", "event", "version", "message_type"),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_exam_id", "exam_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("hl7_destinations.id"))
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    # report.signed | report.addendum | exam.cancelled; version: 0, or the addendum number.
    event: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=0)
    message_type: Mapped[str] = mapped_column(String(16))  # ORU^R01 | MDM^T02
    # pending -> acknowledged, or failed (AE/AR; a coordinator may resend it).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    ack_code: Mapped[str | None] = mapped_column(String(2))
    last_error: Mapped[str | None] = mapped_column(Text)
    escalated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The message's text, rendered once before its first attempt: every attempt
    # sends these bytes.
    payload: Mapped[str | None] = mapped_column(Text)
