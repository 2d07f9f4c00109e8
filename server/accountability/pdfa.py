"""PDF/A-3b documents (ISO 19005-3, level B) made with fpdf2.

What level B asks and how it is met here: every font embedded (DejaVu Sans, the
TrueType fonts matplotlib ships, so no system font is needed); XMP metadata naming
the part and conformance (``pdfaid:part`` 3, ``pdfaid:conformance`` B), written by
fpdf2 when ``enforce_compliance`` is set, which also refuses encryption; an output
intent with an ICC profile (fpdf2's sRGB 2014) so that device RGB colours are
defined. Part 3 rather than 2 because the record carries its own data as an
associated file (``/AF``, relationship Data): the same facts as the pages, for a
program to read.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import OutputIntentSubType
from fpdf.output import PDFICCProfile

COMPLIANCE = "PDF/A-3B"
FONT = "dejavu"


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _srgb() -> bytes:
    return (resources.files("fpdf") / "data" / "color_profiles" / "sRGB2014.icc").read_bytes()


class Document(FPDF):
    """An A4 PDF/A-3b page sequence with DejaVu Sans and a footer line."""

    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=7)
        self.cell(0, 5, f"{self.footer_text}   page {self.page_no()}/{{nb}}", align="C")

    def para(self, text: str, size: float = 9, style: str = "", height: float = 4.6) -> None:
        self.set_font(FONT, style, size)
        self.multi_cell(0, height, text, new_x="LMARGIN", new_y="NEXT")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.para(text, 11, "B", 6)


def document(*, title: str, author: str, created: datetime, footer: str) -> Document:
    pdf = Document(format="A4", enforce_compliance=COMPLIANCE)
    fonts = _font_dir()
    pdf.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.add_output_intent(
        OutputIntentSubType.PDFA,
        output_condition_identifier="sRGB",
        output_condition="sRGB IEC61966-2.1",
        registry_name="http://www.color.org",
        dest_output_profile=PDFICCProfile(contents=_srgb(), n=3, alternate="DeviceRGB"),
        info="sRGB2014 (v2)",
    )
    pdf.set_creation_date(created)
    pdf.set_title(title)
    pdf.set_author(author)
    pdf.set_creator("Teleimagerie")
    pdf.set_producer("Teleimagerie")
    pdf.set_lang("fr-FR")
    pdf.set_margins(16, 14, 16)
    pdf.footer_text = footer
    return pdf
