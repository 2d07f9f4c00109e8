"""Template placeholders left in a report block its signature: the pure decision."""

from __future__ import annotations

import pytest

from server.reports.service import PLACEHOLDER, placeholders_left, templates

FILLED = {
    "indication": "Céphalées brutales.",
    "technique": "Scanner cérébral sans injection.",
    "findings": "Pas d'hémorragie… ni d'effet de masse.",
    "conclusion": "Examen normal.",
    "dose": "PDL : 850 mGy.cm ; CTDIvol : 55 mGy",
}


def test_a_filled_report_has_no_placeholder() -> None:
    assert placeholders_left(FILLED) == []
    assert placeholders_left({**FILLED, "dose": None}) == []


@pytest.mark.parametrize(
    "dose",
    [
        "PDL : […] mGy.cm ; CTDIvol : 55 mGy",
        "PDL : [...] mGy.cm",
        "PDL : [ … ] mGy.cm",
        "PDL : … mGy.cm ; CTDIvol : … mGy",  # the older templates' form
        "PDL : 850 mGy.cm ; CTDIvol : ... mGy",
        "…",
        "PDS : 12 mGy.cm² […]",
    ],
)
def test_the_dose_line_with_a_placeholder_is_named(dose: str) -> None:
    assert placeholders_left({**FILLED, "dose": dose}) == ["dose"]


def test_every_field_holding_one_is_named_in_order() -> None:
    fields = {**FILLED, "conclusion": "Fracture de […].", "technique": "[...]"}
    assert placeholders_left(fields) == ["technique", "conclusion"]


@pytest.mark.parametrize(
    "text",
    ["Pas d'anomalie…", "Hypodensité... à contrôler", "(…)", "[1]", "2…3 mm", "tableau [a]"],
)
def test_an_ellipsis_in_prose_is_not_a_placeholder(text: str) -> None:
    assert placeholders_left({**FILLED, "findings": text}) == []


def test_every_template_placeholder_is_recognised() -> None:
    """A template's dose line is a form to fill in: each one is caught as it stands."""
    doses = [tpl["dose"] for tpl in templates() if tpl.get("dose")]
    assert doses
    for dose in doses:
        assert "[…]" in dose
        assert placeholders_left({"dose": dose}) == ["dose"]
    for tpl in templates():  # and the sections a template fills in are signable prose
        for name in ("technique", "findings", "conclusion"):
            assert not PLACEHOLDER.search(tpl[name]), (tpl["id"], name)
