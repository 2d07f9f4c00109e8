"""Patient identities as each establishment's patient record system sends them
(docs/patients.md): created or updated from an identity feed, merged, given a new
local identifier, and searched by the urgentist's form.

The identity-vigilance rules (Référentiel national d'identitovigilance, RNIV) ask
that the strict traits (birth name, first given names, sex, date of birth,
birthplace code) are kept apart from the used names, that the INS is only shown
as trusted once the identity is *qualified*, and that screens show the strict
traits. Every change here runs in the caller's transaction; the caller audits it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb.index import person_key
from dicomweb.tables import studies
from server.core.models import Exam, PatientIdentity

#: The national assigning authorities of the INS matricule (ANS, "Référentiel INS"):
#: the NIR, the temporary NIA, and their test counterparts.
INS_NIR = "1.2.250.1.213.1.4.8"
INS_NIA = "1.2.250.1.213.1.4.9"
INS_NIR_TEST = "1.2.250.1.213.1.4.10"
INS_NIA_TEST = "1.2.250.1.213.1.4.11"
INS_OIDS = frozenset({INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIA_TEST})

_NIR = re.compile(r"^[0-9][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}[0-9]{2}$")


class IdentityStatus(StrEnum):
    """How far an identity was checked (RNIV): only a *qualified* one (an identity
    document checked and the INS fetched from the national service) may carry the
    INS to other professionals."""

    PROVISIONAL = "provisional"
    RECOVERED = "recovered"
    VALIDATED = "validated"
    QUALIFIED = "qualified"


class PatientError(ValueError):
    """An identity that cannot be stored as given; ``field`` names what is wrong
    in the identity's terms (``ins``, ``birth_date``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class NotFound(LookupError):
    """No identity with that local identifier at that establishment."""


@dataclass(frozen=True)
class Traits:
    """An identity as a message or a form gives it."""

    ipp: str
    birth_name: str
    first_names: str
    sex: str
    birth_date: date
    status: IdentityStatus = IdentityStatus.PROVISIONAL
    ins: str | None = None
    ins_oid: str | None = None
    used_name: str | None = None
    used_first_name: str | None = None
    birthplace_code: str | None = None


def nir_key_ok(matricule: str) -> bool:
    """The two last digits of a NIR/NIA are 97 minus the first 13 modulo 97 (Corsica:
    2A counts as 19, 2B as 18)."""
    body = matricule[:13].replace("2A", "19").replace("2B", "18")
    if not (body.isdigit() and matricule[13:].isdigit()):
        return False
    return 97 - int(body) % 97 == int(matricule[13:])


def check(traits: Traits, today: date) -> Traits:
    """The traits, normalised, or :class:`PatientError` naming the wrong one."""
    ipp = traits.ipp.strip()
    if not ipp or len(ipp) > 64:
        raise PatientError("ipp", "the local identifier (IPP) is 1 to 64 characters")
    birth_name = " ".join(traits.birth_name.split()).upper()
    if not birth_name or len(birth_name) > 100:
        raise PatientError("birth_name", "the birth name is 1 to 100 characters")
    first_names = " ".join(traits.first_names.split())
    if not first_names or len(first_names) > 200:
        raise PatientError("first_names", "the first names are 1 to 200 characters")
    if traits.sex not in ("M", "F", "U"):
        raise PatientError("sex", "sex is M, F or U")
    if traits.birth_date > today:
        raise PatientError("birth_date", "the birth date is in the future")
    ins = (traits.ins or "").strip() or None
    oid = (traits.ins_oid or "").strip() or None
    if ins is not None:
        if oid not in INS_OIDS:
            raise PatientError("ins_oid", "the INS authority is not INS-NIR or INS-NIA")
        if not _NIR.match(ins) or not nir_key_ok(ins):
            raise PatientError("ins", "the INS matricule is not 15 characters with a valid key")
    elif traits.status == IdentityStatus.QUALIFIED:
        raise PatientError("ins", "a qualified identity carries its INS")
    place = (traits.birthplace_code or "").strip() or None
    if place is not None and not re.fullmatch(r"[0-9][0-9AB][0-9]{3}", place):
        raise PatientError("birthplace_code", "the birthplace is a 5-character INSEE code")
    return replace(
        traits,
        ipp=ipp,
        birth_name=birth_name,
        first_names=first_names,
        ins=ins,
        ins_oid=oid if ins else None,
        used_name=" ".join((traits.used_name or "").split()).upper()[:100] or None,
        used_first_name=" ".join((traits.used_first_name or "").split())[:100] or None,
        birthplace_code=place,
    )


def dicom_name(identity: PatientIdentity) -> str:
    """The strict traits as a DICOM person name (PS3.5 6.2): BIRTH NAME^First names."""
    return f"{identity.birth_name}^{identity.first_names}"


def _apply(row: PatientIdentity, traits: Traits, now: datetime) -> None:
    row.ipp = traits.ipp
    row.ins = traits.ins
    row.ins_oid = traits.ins_oid
    row.identity_status = traits.status.value
    row.birth_name = traits.birth_name
    row.first_names = traits.first_names
    row.used_name = traits.used_name
    row.used_first_name = traits.used_first_name
    row.sex = traits.sex
    row.birth_date = traits.birth_date
    row.birthplace_code = traits.birthplace_code
    row.updated_at = now


async def find(db: AsyncSession, establishment_id: int, ipp: str) -> PatientIdentity | None:
    return await db.scalar(
        select(PatientIdentity).where(
            PatientIdentity.establishment_id == establishment_id, PatientIdentity.ipp == ipp
        )
    )


async def surviving(db: AsyncSession, identity: PatientIdentity) -> PatientIdentity:
    """The identity a merged one now lives in (itself when not merged)."""
    seen = {identity.id}
    while identity.merged_into_id is not None:
        identity = await db.get_one(PatientIdentity, identity.merged_into_id)
        if identity.id in seen:  # a cycle would be a bug; stop rather than spin
            break
        seen.add(identity.id)
    return identity


@dataclass
class Known:
    """Identities read ahead for a run of identity messages (:func:`read_ahead`), by
    (establishment, IPP): None where there was none. The identities that run creates
    wait in ``new`` for :func:`write_new`, which inserts them in one statement."""

    rows: dict[tuple[int, str], PatientIdentity | None] = field(default_factory=dict)
    new: list[PatientIdentity] = field(default_factory=list)


async def read_ahead(db: AsyncSession, keys: Iterable[tuple[int, str]]) -> Known:
    """The identities of ``keys`` (establishment, IPP) in one SELECT, for
    :func:`upsert` to use instead of a read each. Valid in this transaction until
    :func:`write_new`, as long as only :func:`upsert` given it changes identities."""
    wanted: dict[int, set[str]] = {}
    for establishment_id, ipp in keys:
        wanted.setdefault(establishment_id, set()).add(ipp.strip())
    known = Known({(est, ipp): None for est, ipps in wanted.items() for ipp in ipps})
    if not wanted:
        return known
    rows = await db.scalars(
        select(PatientIdentity).where(
            or_(
                *(
                    and_(PatientIdentity.establishment_id == est, PatientIdentity.ipp.in_(ipps))
                    for est, ipps in wanted.items()
                )
            )
        )
    )
    for row in rows:
        known.rows[(row.establishment_id, row.ipp)] = row
    return known


async def write_new(db: AsyncSession, known: Known, *, ids: bool = False) -> None:
    """Insert the identities :func:`upsert` created with ``known``, in one statement
    (the ORM would insert them one by one on SQLite to read back each id). They are
    not loaded in the session: read them again to use them, or with ``ids`` each
    is given its new ``id`` (``RETURNING``, one statement still: what a new order
    links its exam to)."""
    if not known.new:
        return
    rows = [{key: getattr(row, key) for key in _IDENTITY_COLUMNS} for row in known.new]
    if ids:
        by_key = {(row.establishment_id, row.ipp): row for row in known.new}
        for id_, establishment_id, ipp in await db.execute(_INSERT_IDENTITY_IDS, rows):
            by_key[(establishment_id, ipp)].id = id_
    else:
        await db.execute(_INSERT_IDENTITY, rows)
    known.new.clear()


# The table, not the class: the ORM's bulk insert would split the rows by which of
# their columns are None, one statement for each kind. Built once.
_IDENTITIES = PatientIdentity.__table__
assert isinstance(_IDENTITIES, Table)
_IDENTITY_COLUMNS = tuple(c.key for c in _IDENTITIES.columns if c.key != "id")
_INSERT_IDENTITY = insert(_IDENTITIES)
# (establishment, IPP) is unique: each id returned finds its row by it.
_INSERT_IDENTITY_IDS = insert(_IDENTITIES).returning(
    _IDENTITIES.c.id, _IDENTITIES.c.establishment_id, _IDENTITIES.c.ipp
)


def _traits_of(row: PatientIdentity) -> Traits:
    return Traits(
        ipp=row.ipp,
        birth_name=row.birth_name,
        first_names=row.first_names,
        sex=row.sex,
        birth_date=row.birth_date,
        status=IdentityStatus(row.identity_status),
        ins=row.ins,
        ins_oid=row.ins_oid,
        used_name=row.used_name,
        used_first_name=row.used_first_name,
        birthplace_code=row.birthplace_code,
    )


async def upsert(
    db: AsyncSession,
    establishment_id: int,
    traits: Traits,
    now: datetime,
    known: Known | None = None,
) -> tuple[PatientIdentity, str, list[str]]:
    """Create the identity, or update the one with that IPP: ``(row, "created" |
    "updated" | "unchanged", exam ids whose shown identity changed)``. The traits
    must have passed :func:`check`. The exams linked to it show the new strict traits.

    With ``known`` (:func:`read_ahead`, holding this IPP) the identity is not read
    again, and a new one waits in ``known.new`` for :func:`write_new` (its ``id``
    unset, no exam can show it yet)."""
    key = (establishment_id, traits.ipp)
    if known is not None and key not in known.rows:
        known = None  # not read ahead: this identity goes the usual way
    row = known.rows[key] if known is not None else await find(db, establishment_id, traits.ipp)
    if row is None:
        row = PatientIdentity(establishment_id=establishment_id, created_at=now)
        _apply(row, traits, now)
        if known is not None:
            known.rows[key] = row
            known.new.append(row)
        else:
            db.add(row)
            await db.flush()
        return row, "created", []
    if row.merged_into_id is not None:
        raise PatientError("ipp", "this identifier was merged into another patient")
    if _traits_of(row) == traits:
        return row, "unchanged", []
    _apply(row, traits, now)
    if known is not None and any(row is new for new in known.new):
        return row, "updated", []  # created by this run, not written yet
    await db.flush()
    return row, "updated", await _refresh_exams(db, row, now)


def study_identity(row: PatientIdentity, now: datetime) -> dict[str, str]:
    """The identity as the archive's study rows carry it, marked corrected at ``now``
    (docs/dicomweb.md "Identity on the way out")."""
    name = dicom_name(row)[:320]
    return {
        "patient_id": row.ipp[:64],
        "patient_name": name,
        "patient_name_key": person_key(name),
        "patient_birth_date": row.birth_date.strftime("%Y%m%d"),
        "patient_sex": row.sex[:16],
        "identity_corrected_at": now.strftime("%Y%m%d%H%M%S.%f%z")[:26],
    }


async def _refresh_exams(db: AsyncSession, row: PatientIdentity, now: datetime) -> list[str]:
    """Copy the identity's traits onto the exams linked to it, and onto the archive's
    index of their studies; the exams' ids.

    The archive's study rows (``dicomweb_studies``) carry the patient attributes
    QIDO-RS matches and returns: after a merge (A40), a new identifier (A47) or an
    update, the images already archived are found and shown under the identity the
    exam now has, never under the old one. ``identity_corrected_at`` marks the rows:
    WADO-RS, WADO-URI and metadata hand the stored instances out with the row's
    identity from the moment this transaction commits (the stored files keep what
    the modality wrote; docs/hl7.md "Merges and the archive")."""
    ids = list(await db.scalars(select(Exam.id).where(Exam.patient_identity_id == row.id)))
    if ids:
        name = dicom_name(row)
        await db.execute(
            update(Exam)
            .where(Exam.id.in_(ids))
            .values(
                patient_id=row.ipp,
                patient_name=name[:200],
                patient_birth_date=row.birth_date,
                patient_sex=row.sex,
            )
            .execution_options(synchronize_session=False)
        )
        # After the exams: an ingest writing a new study row of one of them holds a
        # shared lock on it (dicomweb/index.py), so this sees its row once committed.
        await db.execute(
            update(studies).where(studies.c.exam_id.in_(ids)).values(study_identity(row, now))
        )
    return ids


async def merge(
    db: AsyncSession,
    establishment_id: int,
    survivor: PatientIdentity,
    merged_ipp: str,
    now: datetime,
) -> tuple[PatientIdentity, list[str]]:
    """IHE PAM A40: the identity of ``merged_ipp`` is merged into ``survivor``. Its
    exams follow the survivor (their shown traits with them); the merged row stays,
    pointing at the survivor, so that nothing that named it is lost. Returns the
    merged row and the ids of the exams that moved."""
    merged = await find(db, establishment_id, merged_ipp)
    if merged is None:
        raise NotFound(merged_ipp)
    if merged.id == survivor.id:
        raise PatientError("mrg_ipp", "a patient cannot be merged into itself")
    if merged.merged_into_id is not None:
        raise PatientError("mrg_ipp", "this identifier was merged already")
    moved = list(await db.scalars(select(Exam.id).where(Exam.patient_identity_id == merged.id)))
    # Identities merged earlier into the merged one now point at the survivor too.
    await db.execute(
        update(PatientIdentity)
        .where(PatientIdentity.merged_into_id == merged.id)
        .values(merged_into_id=survivor.id, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    merged.merged_into_id = survivor.id
    merged.updated_at = now
    if moved:
        await db.execute(
            update(Exam)
            .where(Exam.id.in_(moved))
            .values(patient_identity_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
    await db.flush()
    await _refresh_exams(db, survivor, now)
    return merged, moved


async def change_identifier(
    db: AsyncSession, establishment_id: int, old_ipp: str, new_ipp: str, now: datetime
) -> tuple[PatientIdentity, list[str]]:
    """IHE PAM A47: the identity known as ``old_ipp`` is now ``new_ipp``; its exams
    show the new identifier. Refused when ``new_ipp`` is taken (that is a merge)."""
    row = await find(db, establishment_id, old_ipp)
    if row is None:
        raise NotFound(old_ipp)
    new_ipp = new_ipp.strip()
    if not new_ipp or len(new_ipp) > 64:
        raise PatientError("ipp", "the local identifier (IPP) is 1 to 64 characters")
    if await find(db, establishment_id, new_ipp) is not None:
        raise PatientError("ipp", "the new identifier belongs to another patient already")
    row.ipp = new_ipp
    row.updated_at = now
    await db.flush()
    return row, await _refresh_exams(db, row, now)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.upper() + "%"


async def search(
    db: AsyncSession,
    establishment_id: int,
    *,
    q: str | None = None,
    birth_date: date | None = None,
    limit: int = 20,
) -> list[PatientIdentity]:
    """The live (not merged) identities of one establishment matching ``q`` (an IPP
    or an INS exactly, else the start of a birth or used name) and the birth date."""
    stmt = select(PatientIdentity).where(
        PatientIdentity.establishment_id == establishment_id,
        PatientIdentity.merged_into_id.is_(None),
    )
    text = " ".join((q or "").split())
    if text:
        stmt = stmt.where(
            or_(
                PatientIdentity.ipp == text,
                PatientIdentity.ins == text,
                func.upper(PatientIdentity.birth_name).like(_like(text), escape="\\"),
                func.upper(PatientIdentity.used_name).like(_like(text), escape="\\"),
            )
        )
    if birth_date is not None:
        stmt = stmt.where(PatientIdentity.birth_date == birth_date)
    stmt = stmt.order_by(PatientIdentity.birth_name, PatientIdentity.first_names).limit(limit)
    return list(await db.scalars(stmt))


def identity_json(row: PatientIdentity) -> dict[str, Any]:
    """An identity as the API and the room show it (docs/api.md "Patients"): the
    strict traits first; the INS only with its authority and status."""
    return {
        "id": row.id,
        "ipp": row.ipp,
        "status": row.identity_status,
        "birth_name": row.birth_name,
        "first_names": row.first_names,
        "sex": row.sex,
        "birth_date": row.birth_date.isoformat(),
        "birthplace_code": row.birthplace_code,
        "used_name": row.used_name,
        "used_first_name": row.used_first_name,
        "ins": row.ins,
        "ins_oid": row.ins_oid,
    }
