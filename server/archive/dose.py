"""The dose the scanner reports: reading a Radiation Dose Structured Report.

A CT (or X-ray) modality that records its dose sends, next to the images, an
X-Ray Radiation Dose SR (PS3.4 A.35.8; the Enhanced X-Ray Radiation Dose SR of
A.35.18 holds the same tree). For a CT its content follows TID 10011 "CT
Radiation Dose" (PS3.16): a "CT Accumulated Dose Data" container with the
total DLP, and one "CT Acquisition" container per irradiation event, each with
its target region, the CTDI phantom type and a "CT Dose" container holding the
mean CTDIvol and the DLP. A projection X-ray report (TID 10001) gives the
total dose-area product in its "Accumulated X-Ray Dose Data".

:func:`read_rdsr` turns such a dataset into the plain figures the exam keeps
(``exams.radiation_dose``; docs/reports.md "The dose from the scanner").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

# X-Ray Radiation Dose SR and Enhanced X-Ray Radiation Dose SR (PS3.4 B.5).
RDSR_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.88.67", "1.2.840.10008.5.1.4.1.1.88.76"})

# Concept names of PS3.16 (coding scheme DCM) read by this module.
CT_ACCUMULATED = "113811"  # CT Accumulated Dose Data
DLP_TOTAL = "113813"  # CT Dose Length Product Total
CT_ACQUISITION = "113819"  # CT Acquisition
ACQUISITION_PROTOCOL = "125203"  # Acquisition Protocol
TARGET_REGION = "123014"  # Target Region
PHANTOM_TYPE = "113835"  # CTDIw Phantom Type
MEAN_CTDIVOL = "113830"  # Mean CTDIvol
DLP = "113838"  # DLP
XRAY_ACCUMULATED = "113702"  # Accumulated X-Ray Dose Data
DAP_TOTAL = "113722"  # Dose Area Product Total

# Gy.m2 (UCUM "Gy.m2") to mGy.cm2: 1000 mGy x 10 000 cm2.
GY_M2_TO_MGY_CM2 = 1e7


class NotADoseReport(ValueError):
    """The dataset is not a radiation dose SR this module reads."""


def _concept(item: Dataset) -> str | None:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    code = names[0]
    if code.get("CodingSchemeDesignator") not in ("DCM", None):
        return None
    value = code.get("CodeValue")
    return str(value) if value is not None else None


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence") or [])


def _walk(item: Dataset) -> Iterator[Dataset]:
    for child in _children(item):
        yield child
        yield from _walk(child)


def _number(item: Dataset) -> tuple[float, str] | None:
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return None
    value = measured[0].get("NumericValue")
    if value is None or value == "":
        return None
    units = measured[0].get("MeasurementUnitsCodeSequence")
    unit = str(units[0].get("CodeValue", "")) if units else ""
    return float(value), unit


def _find_number(item: Dataset, concept: str) -> tuple[float, str] | None:
    for child in _walk(item):
        if _concept(child) == concept and child.get("ValueType") == "NUM":
            return _number(child)
    return None


def _find_text(item: Dataset, concept: str) -> str | None:
    """The meaning of a CODE item, or the value of a TEXT item, in the tree
    under ``item``."""
    for child in _walk(item):
        if _concept(child) != concept:
            continue
        if child.get("ValueType") == "CODE" and child.get("ConceptCodeSequence"):
            return str(child.ConceptCodeSequence[0].get("CodeMeaning", "")) or None
        if child.get("ValueType") == "TEXT":
            return str(child.get("TextValue", "")) or None
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def read_dataset(ds: Dataset) -> dict[str, Any]:
    """The figures of a dose SR: ``kind`` (``ct`` or ``xray``), the total DLP in
    mGy.cm and each CT acquisition's CTDIvol (mGy) and DLP (mGy.cm) with its
    target region, phantom type and protocol; or the total DAP in mGy.cm2 for
    projection X-ray. Raises :class:`NotADoseReport` for anything else."""
    if str(ds.get("SOPClassUID", "")) not in RDSR_CLASSES:
        raise NotADoseReport("not a radiation dose SR")
    items = list(_walk(ds))
    ct_total = next((i for i in items if _concept(i) == CT_ACCUMULATED), None)
    acquisitions = [i for i in items if _concept(i) == CT_ACQUISITION]
    base: dict[str, Any] = {
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
    }
    if ct_total is not None or acquisitions:
        total = _find_number(ct_total, DLP_TOTAL) if ct_total is not None else None
        return {
            **base,
            "kind": "ct",
            "total_dlp_mgycm": _round(total[0]) if total else None,
            "acquisitions": [
                {
                    "protocol": _find_text(acq, ACQUISITION_PROTOCOL),
                    "target_region": _find_text(acq, TARGET_REGION),
                    "phantom": _find_text(acq, PHANTOM_TYPE),
                    "ctdivol_mgy": _round(v[0]) if (v := _find_number(acq, MEAN_CTDIVOL)) else None,
                    "dlp_mgycm": _round(v[0]) if (v := _find_number(acq, DLP)) else None,
                }
                for acq in acquisitions
            ],
        }
    xray = next((i for i in items if _concept(i) == XRAY_ACCUMULATED), None)
    if xray is not None:
        dap = _find_number(xray, DAP_TOTAL)
        value = None
        if dap is not None:
            value = dap[0] * GY_M2_TO_MGY_CM2 if dap[1] == "Gy.m2" else dap[0]
        return {**base, "kind": "xray", "total_dap_mgycm2": _round(value), "acquisitions": []}
    raise NotADoseReport("a dose SR without accumulated dose data")


def read_rdsr(path: Path) -> dict[str, Any]:
    """:func:`read_dataset` of a stored Part 10 file."""
    return read_dataset(dcmread(path))
