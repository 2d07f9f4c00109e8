"""The report's dose line from the scanner's figures, and the diagnostic
reference levels (docs/reports.md "The dose from the scanner").

The figures come from the exam's Radiation Dose SR (server/archive/dose.py).
The reference levels are not the platform's to decide: they are read from the
file the site's medical physicist provides (``DRL_FILE``, docs/configuration.md),
a JSON object from an exam key to its limits and their source::

    {"CT:HEAD": {"dlp_mgycm": 0, "ctdivol_mgy": 0, "source": "..."}}

An exam's key is tried from the most specific to the least: its protocol
(``protocol:<id>``), then ``<modality>:<body part>``, then the modality alone.
A dose is above the level when the total DLP exceeds ``dlp_mgycm`` or any
acquisition's CTDIvol exceeds ``ctdivol_mgy`` (for projection X-ray, the total
DAP exceeds ``dap_mgycm2``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

from server.core.models import Exam
from server.reports.service import PLACEHOLDER

log = logging.getLogger("teleimagerie.reports")

Limit = Annotated[float, Field(gt=0)]


class ReferenceLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dlp_mgycm: Limit | None = None
    ctdivol_mgy: Limit | None = None
    dap_mgycm2: Limit | None = None
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ReferenceLevels(RootModel[dict[str, ReferenceLevel]]):
    pass


class BadReferenceFile(ValueError):
    """``DRL_FILE`` cannot be read or does not follow the format above."""


_cache: dict[Path, tuple[tuple[int, int], dict[str, ReferenceLevel]]] = {}


def load_levels(path: Path | None) -> dict[str, ReferenceLevel]:
    """The levels of ``path`` (none without a file), read again when it changes."""
    if path is None:
        return {}
    try:
        stat = path.stat()
        mtime = (stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        levels = ReferenceLevels.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        raise BadReferenceFile(f"DRL_FILE {path}: {exc}") from None
    found = {key.strip().upper(): level for key, level in levels.root.items()}
    _cache[path] = (mtime, found)
    return found


def exam_keys(exam: Exam) -> list[str]:
    keys = [f"PROTOCOL:{exam.protocol_id.upper()}"] if exam.protocol_id else []
    modality = exam.modality.strip().upper()
    return [*keys, f"{modality}:{exam.body_part.strip().upper()}", modality]


def _num(value: float) -> str:
    return f"{value:g}".replace(".", ",")


def dose_text(figures: dict[str, Any]) -> str:
    """The dose line as the templates write it, with the scanner's numbers."""
    if figures.get("kind") == "xray":
        dap = figures.get("total_dap_mgycm2")
        return f"PDS : {_num(dap)} mGy.cm²" if dap is not None else ""
    parts = []
    if figures.get("total_dlp_mgycm") is not None:
        parts.append(f"PDL : {_num(figures['total_dlp_mgycm'])} mGy.cm")
    ctdi = []
    for acq in figures.get("acquisitions", []):
        if acq.get("ctdivol_mgy") is None:
            continue
        where = acq.get("target_region") or acq.get("protocol")
        ctdi.append(f"{_num(acq['ctdivol_mgy'])} mGy" + (f" ({where})" if where else ""))
    if ctdi:
        parts.append("CTDIvol : " + ", ".join(ctdi))
    return " ; ".join(parts)


def assess(
    exam: Exam, figures: dict[str, Any], levels: dict[str, ReferenceLevel]
) -> dict[str, Any] | None:
    """The reference level that applies to the exam, and what exceeds it; None
    when the file has no level for the exam."""
    key = next((k for k in exam_keys(exam) if k in levels), None)
    if key is None:
        return None
    level = levels[key]
    above: list[str] = []
    dlp = figures.get("total_dlp_mgycm")
    if level.dlp_mgycm is not None and dlp is not None and dlp > level.dlp_mgycm:
        above.append("dlp")
    ctdis = [a["ctdivol_mgy"] for a in figures.get("acquisitions", []) if a.get("ctdivol_mgy")]
    if level.ctdivol_mgy is not None and any(c > level.ctdivol_mgy for c in ctdis):
        above.append("ctdivol")
    dap = figures.get("total_dap_mgycm2")
    if level.dap_mgycm2 is not None and dap is not None and dap > level.dap_mgycm2:
        above.append("dap")
    return {
        "key": key,
        **level.model_dump(exclude_none=True),
        "above": bool(above),
        "exceeded": above,
    }


def radiation_dose(exam: Exam, drl_file: Path | None) -> dict[str, Any] | None:
    """What the report and the room show of the exam's dose: the scanner's figures,
    the line they make, and the reference level with the ``above`` flag."""
    figures = exam.radiation_dose
    if not figures:
        return None
    try:
        reference = assess(exam, figures, load_levels(drl_file))
    except BadReferenceFile:
        log.exception("the reference levels cannot be read; the dose is shown without them")
        reference = None
    return {**figures, "text": dose_text(figures), "reference": reference}


def fill_dose_line(line: str | None, dose: dict[str, Any] | None) -> str | None:
    """The draft's dose line, with the scanner's figures in place of a blank line
    or one that still holds the template's placeholder; a line the radiologist
    typed is theirs and stays."""
    if dose is None or not dose["text"]:
        return line
    if line is None or not line.strip() or PLACEHOLDER.search(line):
        return str(dose["text"])
    return line
