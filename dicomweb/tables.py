"""The archive's SQL index: studies, series, instances (SQLAlchemy Core).

Only the attributes QIDO-RS matches on (PS3.18 Table 10.6.1-5) get columns; the
full DICOM JSON of each instance is stored once, as text, so that metadata
responses are assembled by concatenation without re-parsing anything.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.sql.expression import Join

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

studies = Table(
    "dicomweb_studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("patient_name", String(320), nullable=False, default=""),
    Column("patient_name_key", String(320), nullable=False, default=""),
    Column("patient_id", String(64), nullable=False, default=""),
    Column("patient_birth_date", String(8), nullable=False, default=""),
    Column("patient_sex", String(16), nullable=False, default=""),
    Column("study_date", String(8), nullable=False, default=""),
    Column("study_time", String(16), nullable=False, default=""),
    Column("accession_number", String(64), nullable=False, default=""),
    Column("study_description", String(320), nullable=False, default=""),
    Column("modalities", String(160), nullable=False, default=""),
    Column("referring_physician_name", String(320), nullable=False, default=""),
    Column("referring_physician_key", String(320), nullable=False, default=""),
    Column("study_id", String(64), nullable=False, default=""),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("exam_id", String(36), nullable=True),
    Column("establishment_id", Integer, nullable=True),
    Column("attrs", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger, nullable=False),
    # Set (DICOM DT) when the patient columns were corrected after instances were
    # stored: they are handed out with these values (dicomweb/identity.py).
    Column("identity_corrected_at", String(26), nullable=True),
    Index("ix_dicomweb_studies_patient_id", "patient_id"),
    Index("ix_dicomweb_studies_patient_name_key", "patient_name_key"),
    # prefix LIKE on PostgreSQL under a non-C collation (migration 0008)
    Index(
        "ix_dicomweb_studies_patient_name_key_prefix",
        "patient_name_key",
        postgresql_ops={"patient_name_key": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql"),
    Index("ix_dicomweb_studies_study_date", "study_date"),
    Index("ix_dicomweb_studies_accession_number", "accession_number"),
    Index("ix_dicomweb_studies_exam_id", "exam_id"),
    Index("ix_dicomweb_studies_establishment_id", "establishment_id"),
)

series = Table(
    "dicomweb_series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_pk", Integer, ForeignKey("dicomweb_studies.id"), nullable=False),
    Column("series_uid", String(64), nullable=False, unique=True),
    Column("modality", String(16), nullable=False, default=""),
    Column("series_number", Integer, nullable=True),
    Column("series_description", String(320), nullable=False, default=""),
    Column("body_part_examined", String(64), nullable=False, default=""),
    Column("series_date", String(8), nullable=False, default=""),
    Column("series_time", String(16), nullable=False, default=""),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("attrs", Text, nullable=False, default="{}"),
    Index("ix_dicomweb_series_study_pk", "study_pk"),
    Index("ix_dicomweb_series_modality", "modality"),
)

instances = Table(
    "dicomweb_instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_pk", Integer, ForeignKey("dicomweb_studies.id"), nullable=False),
    Column("series_pk", Integer, ForeignKey("dicomweb_series.id"), nullable=False),
    Column("sop_uid", String(64), nullable=False, unique=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("number_of_frames", Integer, nullable=True),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("path", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("frames", Text, nullable=True),
    Column("metadata", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_dicomweb_instances_series_pk", "series_pk"),
    Index("ix_dicomweb_instances_study_pk", "study_pk"),
    Index("ix_dicomweb_instances_sop_class_uid", "sop_class_uid"),
)


def instances_with_parents() -> Join:
    """Instances joined to their series and study: the FROM of every query that
    reaches an instance through its study (scope, matching, location)."""
    return instances.join(series, instances.c.series_pk == series.c.id).join(
        studies, instances.c.study_pk == studies.c.id
    )
