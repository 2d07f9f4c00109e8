"""The tables of the hospital PACS priors (docs/priors.md).

``pacs_sources``: one hospital PACS per establishment, queried by DICOM
query/retrieve (PS3.4 Annex C). ``prior_fetches``: one row per accepted exam whose
priors were (or are being) looked for; the row is the job's claim and its lease.
``hospital_priors``: each relevant study found for an exam, its retrieval state, and
once retrieved the study it is in our archive (``study_instance_uid``; filed under
no exam).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base


class PacsSource(Base):
    __tablename__ = "pacs_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"), unique=True)
    # A DIMSE PACS: the PACS (the called AE) and us (the calling AE it knows us by),
    # PS3.8 7.1.1; the studies retrieved by C-GET or by C-MOVE to our Storage SCP.
    # A DICOMweb PACS has none of these but its root URL (``dicomweb_url``).
    ae_title: Mapped[str | None] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    calling_ae_title: Mapped[str | None] = mapped_column(String(16))
    retrieve: Mapped[str] = mapped_column(
        String(8), default="get", server_default="get"
    )  # get | move | wado
    # A DICOMweb PACS (PS3.18: QIDO-RS, WADO-RS): its root, how we authenticate
    # (none | basic | bearer; the password or token in ``dicomweb_secret``), the CA
    # file its TLS certificate is checked against (None: the system's).
    dicomweb_url: Mapped[str | None] = mapped_column(String(500))
    dicomweb_auth: Mapped[str] = mapped_column(String(8), default="none", server_default="none")
    dicomweb_user: Mapped[str | None] = mapped_column(String(128))
    dicomweb_secret: Mapped[str | None] = mapped_column(String(2000))
    dicomweb_ca: Mapped[str | None] = mapped_column(String(500))
    # Relevance: studies of the last ``years`` years, at most ``max_studies`` of them.
    years: Mapped[int] = mapped_column(Integer, default=5)
    max_studies: Mapped[int] = mapped_column(Integer, default=3)
    timeout_s: Mapped[int] = mapped_column(Integer, default=30)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PriorFetch(Base):
    """An exam's priors looked for in its establishment's PACS: ``running`` while a
    worker holds it (until ``lease_until``: a worker killed midway leaves a row that
    comes due again), then ``done`` or ``failed`` (``reason``)."""

    __tablename__ = "prior_fetches"

    exam_id: Mapped[str] = mapped_column(
        ForeignKey("exams.id", ondelete="CASCADE"), primary_key=True
    )
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class HospitalPrior(Base):
    """One relevant study of the patient found in the hospital's PACS for an exam."""

    __tablename__ = "hospital_priors"
    __table_args__ = (
        UniqueConstraint("exam_id", "study_instance_uid"),
        Index("ix_hospital_priors_establishment_patient", "establishment_id", "patient_id"),
        Index("ix_hospital_priors_study_instance_uid", "study_instance_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"))
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"))
    # The identifier the PACS was queried with (the establishment's, or the INS).
    patient_id: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    study_date: Mapped[str] = mapped_column(String(8), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    modalities: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    # pending -> retrieving -> done | failed (``reason``, ``message``).
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(String(300))
    instances: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
