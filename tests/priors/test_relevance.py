"""Which PACS studies are worth retrieving (server/priors/relevance.py), with values."""

from __future__ import annotations

from datetime import date

from server.priors.pacs import Study
from server.priors.relevance import Current, date_range, regions_of, relevant

TODAY = date(2026, 12, 6)
CURRENT = Current("1.2.3", "ACC1", "CT", "HEAD", TODAY)


def study(uid: str, day: str, modalities: str, description: str = "", parts: str = "") -> Study:
    return Study(
        study_uid=uid,
        patient_id="IPP-1",
        study_date=day,
        accession_number="",
        modalities=tuple(modalities.split()),
        description=description,
        body_parts=tuple(parts.split()),
    )


def test_the_date_range_reaches_back_the_years_asked() -> None:
    assert date_range(CURRENT, 5) == "20211206-20261206"
    leap = Current("1", "", "CT", "HEAD", date(2024, 2, 29))
    assert date_range(leap, 1) == "20230228-20240229"


def test_regions_from_series_body_parts_then_from_the_description() -> None:
    assert regions_of(study("a", "", "CT", "TDM THORAX", "HEAD")) == {"head"}
    assert regions_of(study("a", "", "MR", "IRM cérébrale")) == {"head"}
    assert regions_of(study("a", "", "CT", "Scanner thoraco-abdomino-pelvien")) == {
        "chest",
        "abdomen",
        "pelvis",
    }
    assert regions_of(study("a", "", "CR", "")) == frozenset()


def test_relevant_by_region_or_modality_ranked_then_newest_first() -> None:
    studies = [
        study("ct-chest", "20260101", "CT", "TDM THORAX"),  # modality only
        study("mr-head", "20250101", "MR", "", "BRAIN"),  # region only
        study("ct-head", "20240101", "CT", "TDM CRANE"),  # both
        study("cr-chest", "20260601", "CR", "THORAX"),  # neither
        study("ct-old", "20190101", "CT", "TDM CRANE"),  # too old
        study("1.2.3", "20261206", "CT", "TDM CRANE"),  # the exam's own study
        study("ct-head", "20240101", "CT", "TDM CRANE"),  # answered twice
    ]
    assert [s.study_uid for s in relevant(CURRENT, studies, 5, 10)] == [
        "ct-chest",
        "mr-head",
        "ct-head",
    ]
    # Two kept: both region and modality first, then region; shown newest first.
    assert [s.study_uid for s in relevant(CURRENT, studies, 5, 2)] == ["mr-head", "ct-head"]
    assert relevant(CURRENT, studies, 5, 0) == []


def test_the_exam_s_own_accession_is_never_a_prior() -> None:
    same = Study("9.9", "IPP-1", "20261206", "ACC1", ("CT",), "TDM CRANE")
    assert relevant(CURRENT, [same], 5, 3) == []
