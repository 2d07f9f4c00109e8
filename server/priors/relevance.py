"""Which of the patient's studies in the hospital's PACS are worth retrieving for an
exam (docs/priors.md "Relevance"). Pure: values in, values out.

A study is relevant when it shows the same body region as the exam (from its
series' BodyPartExamined, PS3.16 Annex L, or failing that from words of its
description) or was made with the same modality, within the last ``years`` years
before the exam. The current exam's own study (same StudyInstanceUID or accession
number: the scanner may have sent it to the PACS too) is never a prior. Ranked by
region and modality both, then region, then modality, newest first within each;
the first ``limit`` are kept, returned newest first.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

from server.priors.pacs import Study

# Body part codes (PS3.16 Annex L, and the request form's) to the regions they show.
REGIONS: dict[str, frozenset[str]] = {
    "HEAD": frozenset({"head"}),
    "BRAIN": frozenset({"head"}),
    "SKULL": frozenset({"head"}),
    "FACE": frozenset({"head"}),
    "HEADNECK": frozenset({"head", "neck"}),
    "NECK": frozenset({"neck"}),
    "CSPINE": frozenset({"neck", "spine"}),
    "TSPINE": frozenset({"spine"}),
    "LSPINE": frozenset({"spine"}),
    "SSPINE": frozenset({"spine"}),
    "SPINE": frozenset({"spine"}),
    "CHEST": frozenset({"chest"}),
    "THORAX": frozenset({"chest"}),
    "LUNG": frozenset({"chest"}),
    "HEART": frozenset({"chest"}),
    "ABDOMEN": frozenset({"abdomen"}),
    "LIVER": frozenset({"abdomen"}),
    "KIDNEY": frozenset({"abdomen"}),
    "ABDOMENPELVIS": frozenset({"abdomen", "pelvis"}),
    "PELVIS": frozenset({"pelvis"}),
    "CAP": frozenset({"chest", "abdomen", "pelvis"}),
    "CHESTABDPELVIS": frozenset({"chest", "abdomen", "pelvis"}),
    "WHOLEBODY": frozenset({"head", "neck", "chest", "abdomen", "pelvis", "spine"}),
    "EXTREMITY": frozenset({"extremity"}),
}
# Words of a study description (French and English, accents removed) to regions.
WORDS: dict[str, str] = {
    "CRAN": "head",
    "CEREB": "head",
    "ENCEPHAL": "head",
    "TETE": "head",
    "HEAD": "head",
    "BRAIN": "head",
    "COU": "neck",
    "NECK": "neck",
    "CERVICAL": "neck",
    "THORA": "chest",
    "CHEST": "chest",
    "PULMON": "chest",
    "ABDO": "abdomen",
    "PELV": "pelvis",
    "BASSIN": "pelvis",
    "RACHIS": "spine",
    "SPINE": "spine",
    "LOMBA": "spine",
}


def regions_of_part(part: str) -> frozenset[str]:
    return REGIONS.get(part.strip().upper().replace(" ", ""), frozenset())


def regions_of_words(text: str) -> frozenset[str]:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()
    words = plain.replace("^", " ").replace("-", " ").replace("_", " ").split()
    return frozenset(
        region for word in words for stem, region in WORDS.items() if word.startswith(stem)
    )


def regions_of(study: Study) -> frozenset[str]:
    found: frozenset[str] = frozenset()
    for part in study.body_parts:
        found |= regions_of_part(part)
    return found or regions_of_words(study.description)


@dataclass(frozen=True)
class Current:
    """What relevance reads of the exam being read."""

    study_uid: str
    accession_number: str
    modality: str
    body_part: str
    day: date


def date_range(current: Current, years: int) -> str:
    """The C-FIND StudyDate range (PS3.4 C.2.2.2.5.1): ``years`` years back to the
    exam's day."""
    try:
        start = current.day.replace(year=current.day.year - years)
    except ValueError:  # 29 February
        start = current.day.replace(year=current.day.year - years, day=28)
    return f"{start:%Y%m%d}-{current.day:%Y%m%d}"


def relevant(current: Current, studies: list[Study], years: int, limit: int) -> list[Study]:
    """The studies to retrieve, newest first (see the module's docstring)."""
    earliest = date_range(current, years)[:8]
    latest = f"{current.day:%Y%m%d}"
    wanted = regions_of_part(current.body_part) or regions_of_words(current.body_part)
    ranked: list[tuple[int, str, Study]] = []
    seen: set[str] = set()
    for s in studies:
        if s.study_uid in seen or s.study_uid == current.study_uid:
            continue
        if current.accession_number and s.accession_number == current.accession_number:
            continue
        if s.study_date and not earliest <= s.study_date <= latest:
            continue
        same_region = bool(wanted & regions_of(s))
        same_modality = current.modality.upper() in {m.upper() for m in s.modalities}
        if not (same_region or same_modality):
            continue
        seen.add(s.study_uid)
        rank = 0 if same_region and same_modality else 1 if same_region else 2
        ranked.append((rank, s.study_date, s))
    ranked.sort(key=lambda r: r[1], reverse=True)
    ranked.sort(key=lambda r: r[0])
    kept = [s for _, _, s in ranked[: max(0, limit)]]
    return sorted(kept, key=lambda s: s.study_date, reverse=True)
