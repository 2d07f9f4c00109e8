"""Key images and measurements saved into the exam's study as DICOM objects
(docs/frontend.md "Key images and measurements", docs/api.md "Key images and measurements").

The viewer sends the images the radiologist marked and the measurements drawn on them;
the server builds, with highdicom:

- a Key Object Selection document (PS3.3 A.59, TID 2010 "Key Object Selection", title
  (113000, DCM, "Of Interest")) referencing the marked images;
- a Comprehensive 3D SR measurement report (PS3.16 TID 1500 "Measurement Report"), one
  TID 1410 planar ROI group per measurement: a length (SCOORD POLYLINE of two points,
  (410668003, SCT, "Length") in mm), an elliptical ROI (SCOORD ELLIPSE of four points,
  its area in mm², mean and standard deviation in the modality's unit: HU for CT).

Both are filed into the exam's study through the archive's ingest path, as the signed
report's PDF is (``server.reports.delivery``), so QIDO lists a KO series and an SR series.

Image coordinates are DICOM's (PS3.3 C.18.6.1.1): column then row, the top left corner of
the top left pixel at (0, 0), a pixel's centre at +0.5.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import highdicom as hd
import numpy as np
import pydicom
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb import identity
from dicomweb.tables import instances, series, studies
from dicomweb.types import Failure, KeptAside
from server.archive.context import ArchiveContext
from server.core.errors import ApiError
from server.core.identity import SystemPrincipal
from server.core.models import Exam

KO_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection Document Storage
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
KINDS = {KO_CLASS: "key_images", SR_CLASS: "measurements"}
KO_SERIES_NUMBER = 990
SR_SERIES_NUMBER = 991
MAX_ITEMS = 200
#: The procedure a measurement report names (TID 1500 row 6), by the images' modality.
PROCEDURES = {
    "CT": codes.LN.CTUnspecifiedBodyRegion,
    "MR": codes.LN.MRIUnspecifiedBodyRegion,
    "CR": codes.LN.XRUnspecifiedBodyRegion,
    "DX": codes.LN.XRUnspecifiedBodyRegion,
}

#: Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) the
#: documents copy from their evidence: empty when an image does not carry them.
TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
)

Uid = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=0, le=65536)]
Point = tuple[Coordinate, Coordinate]
Amount = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e9)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyImage(_Strict):
    sop_instance_uid: Uid
    frame: int = Field(1, ge=1, le=100_000)


class LengthMeasurement(_Strict):
    type: Literal["length"]
    sop_instance_uid: Uid
    frame: int = Field(1, ge=1, le=100_000)
    points: Annotated[list[Point], Field(min_length=2, max_length=2)]
    length_mm: Amount


class EllipseMeasurement(_Strict):
    """An elliptical ROI: four points, the ends of the major then the minor axis
    (PS3.3 C.18.6.1.2 ELLIPSE), and its statistics."""

    type: Literal["ellipse"]
    sop_instance_uid: Uid
    frame: int = Field(1, ge=1, le=100_000)
    points: Annotated[list[Point], Field(min_length=4, max_length=4)]
    area_mm2: Amount
    mean: Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]
    sd: Amount
    unit: Literal["HU", ""] = "HU"


Measurement = Annotated[LengthMeasurement | EllipseMeasurement, Field(discriminator="type")]


class KeyObjectsBody(_Strict):
    key_images: list[KeyImage] = Field(default_factory=list, max_length=MAX_ITEMS)
    measurements: list[Measurement] = Field(default_factory=list, max_length=MAX_ITEMS)
    description: str = Field("", max_length=64)

    @model_validator(mode="after")
    def _something(self) -> KeyObjectsBody:
        if not self.key_images and not self.measurements:
            raise ValueError("mark a key image or draw a measurement first")
        return self


@dataclass(frozen=True)
class Saved:
    key_images: Dataset | None
    measurements: Dataset | None

    def json(self) -> dict[str, Any]:
        return {
            kind: {
                "series_instance_uid": str(ds.SeriesInstanceUID),
                "sop_instance_uid": str(ds.SOPInstanceUID),
                "sop_class_uid": str(ds.SOPClassUID),
            }
            for kind, ds in (("key_images", self.key_images), ("measurements", self.measurements))
            if ds is not None
        }


def _references(body: KeyObjectsBody) -> list[tuple[str, str, int, Sequence[Point]]]:
    """(field, SOP instance UID, frame, points) of everything the body refers to."""
    out: list[tuple[str, str, int, Sequence[Point]]] = [
        (f"key_images.{i}", k.sop_instance_uid, k.frame, ()) for i, k in enumerate(body.key_images)
    ]
    out += [
        (f"measurements.{i}", m.sop_instance_uid, m.frame, m.points)
        for i, m in enumerate(body.measurements)
    ]
    return out


def _no_bulk(*_args: Any) -> bytes:
    return b""


async def load_evidence(db: AsyncSession, exam: Exam, body: KeyObjectsBody) -> dict[str, Dataset]:
    """The headers of the referenced images, from the archive's index (no file is
    read), each checked: an image of this exam's study, the frame and points on it.
    Raises 422 naming the first field that is not."""
    refs = _references(body)
    uids = sorted({r[1] for r in refs})
    rows = (
        await db.execute(
            select(
                instances.c.sop_uid,
                instances.c.rows,
                instances.c.columns,
                instances.c.number_of_frames,
                instances.c.metadata,
                *identity.COLUMNS,
            )
            .join(series, instances.c.series_pk == series.c.id)
            .join(studies, series.c.study_pk == studies.c.id)
            .where(studies.c.study_uid == exam.study_instance_uid, instances.c.sop_uid.in_(uids))
        )
    ).all()
    found = {r.sop_uid: r for r in rows}
    for field, uid, frame, points in refs:
        row = found.get(uid)
        if row is None or not row.rows or not row.columns:
            raise _invalid(
                "unknown_instance",
                f"{field}.sop_instance_uid",
                "not an image of this exam's study",
            )
        if frame > (row.number_of_frames or 1):
            raise _invalid("no_such_frame", f"{field}.frame", "the image has fewer frames")
        if any(c > row.columns or r > row.rows for c, r in points):
            raise _invalid("outside_image", f"{field}.points", "a point lies outside the image")
    evidence = {}
    for uid, row in found.items():
        # The patient as the exam's study shows it now (a merge since the images were
        # stored): the documents copy their Patient module from the evidence.
        correction = identity.correction_of(row)
        text = (
            row.metadata
            if correction is None
            else identity.correct_metadata(row.metadata, correction)
        )
        meta = json.loads(text)
        ds = Dataset.from_json(
            {k: v for k, v in meta.items() if "BulkDataURI" not in v},
            bulk_data_uri_handler=_no_bulk,
        )
        for keyword in TYPE_2:  # read by highdicom, may be absent from an image
            if keyword not in ds:
                setattr(ds, keyword, "")
        evidence[uid] = ds
    return evidence


def _invalid(code: str, field: str, message: str) -> ApiError:
    return ApiError(422, code, f"{field}: {message}", fields=[{"field": field, "message": message}])


def _observer(name: str) -> hd.sr.ObserverContext:
    """The radiologist as observer (TID 1003). The display name is one free text, so
    it is the family name component, ended by ``^`` to say so (PS3.5 6.2.1)."""
    person = " ".join(name.replace("^", " ").split())[:63] + "^"
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=person),
    )


def _frames(ds: Dataset, frame: int) -> list[int] | None:
    return [frame] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else None


def _measurement_group(
    index: int, m: LengthMeasurement | EllipseMeasurement, ds: Dataset
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    source = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=str(ds.SOPClassUID),
        referenced_sop_instance_uid=str(ds.SOPInstanceUID),
        referenced_frame_numbers=_frames(ds, m.frame),
    )
    graphic = np.array(m.points, dtype=float)
    if isinstance(m, LengthMeasurement):
        region = hd.sr.ImageRegion(hd.sr.GraphicTypeValues.POLYLINE, graphic, source)
        values = [hd.sr.Measurement(codes.SCT.Length, m.length_mm, codes.UCUM.Millimeter)]
        label = f"Distance {index + 1}"
    else:
        region = hd.sr.ImageRegion(hd.sr.GraphicTypeValues.ELLIPSE, graphic, source)
        unit = codes.UCUM.HounsfieldUnit if m.unit == "HU" else codes.UCUM.NoUnits
        values = [
            hd.sr.Measurement(codes.SCT.Area, m.area_mm2, codes.UCUM.SquareMillimeter),
            hd.sr.Measurement(codes.SCT.Mean, m.mean, unit),
            hd.sr.Measurement(codes.SCT.StandardDeviation, m.sd, unit),
        ]
        label = f"ROI {index + 1}"
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
        referenced_region=region,
        measurements=values,
    )


def build(
    body: KeyObjectsBody,
    evidence: dict[str, Dataset],
    *,
    observer: str,
    institution: str,
    now: datetime,
) -> Saved:
    """The KO (if images are marked) and the SR (if measurements are drawn); pure."""
    when = {"ContentDate": now.strftime("%Y%m%d"), "ContentTime": now.strftime("%H%M%S")}
    maker = "Téléimagerie"
    site = institution[:64] or None
    ko = sr = None
    if body.key_images:
        marked = _dedupe([evidence[k.sop_instance_uid] for k in body.key_images])
        ko = hd.ko.KeyObjectSelectionDocument(
            evidence=marked,
            content=hd.ko.KeyObjectSelection(
                document_title=codes.DCM.OfInterest,
                referenced_objects=marked,
                observer_person_context=_observer(observer),
                description=body.description or None,
            ),
            series_instance_uid=generate_uid(),
            series_number=KO_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=maker,
            institution_name=site,
        )
        ko.SeriesDescription = "Images clés"
    if body.measurements:
        used = _dedupe([evidence[m.sop_instance_uid] for m in body.measurements])
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(
                observer_person_context=_observer(observer)
            ),
            procedure_reported=PROCEDURES.get(
                str(used[0].get("Modality", "")), codes.LN.DiagnosticImagingReport
            ),
            imaging_measurements=[
                _measurement_group(i, m, evidence[m.sop_instance_uid])
                for i, m in enumerate(body.measurements)
            ],
        )
        sr = hd.sr.Comprehensive3DSR(
            evidence=used,
            content=report,
            series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            is_complete=True,
            manufacturer=maker,
            institution_name=site,
        )
        sr.SeriesDescription = "Mesures"
    for ds in (ko, sr):
        if ds is not None:
            for keyword, value in when.items():
                setattr(ds, keyword, value)
    return Saved(ko, sr)


def _dedupe(datasets: list[Dataset]) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for ds in datasets:
        seen.setdefault(str(ds.SOPInstanceUID), ds)
    return list(seen.values())


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


async def store(app: ArchiveContext, exam: Exam, saved: Saved) -> None:
    """File the documents into the exam's study (the archive's ingest path). Both are
    built before this is called, so a body that fails stores nothing."""
    for ds in (saved.key_images, saved.measurements):
        if ds is None:
            continue
        result = await app.ingestor.store(
            part10(ds), SystemPrincipal(exam_id=exam.id), expected_study=exam.study_instance_uid
        )
        if isinstance(result, Failure | KeptAside):
            raise ApiError(409, "not_stored", f"the archive did not file it: {result.message}")


async def listed(db: AsyncSession, exam: Exam) -> list[dict[str, Any]]:
    """The key object and measurement documents in the exam's study, oldest first."""
    rows = (
        await db.execute(
            select(
                instances.c.sop_uid,
                instances.c.sop_class_uid,
                instances.c.created_at,
                series.c.series_uid,
                series.c.series_description,
            )
            .join(series, instances.c.series_pk == series.c.id)
            .join(studies, series.c.study_pk == studies.c.id)
            .where(
                studies.c.study_uid == exam.study_instance_uid,
                instances.c.sop_class_uid.in_(list(KINDS)),
            )
            .order_by(instances.c.created_at, instances.c.id)
        )
    ).all()
    return [
        {
            "kind": KINDS[r.sop_class_uid],
            "series_instance_uid": r.series_uid,
            "sop_instance_uid": r.sop_uid,
            "series_description": r.series_description,
            "stored_at": r.created_at,
        }
        for r in rows
    ]
