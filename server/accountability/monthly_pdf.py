"""The monthly site report as a PDF/A-3b document with the page's charts
(docs/accountability.md "Monthly site report")."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

from PIL import Image

from server.accountability import charts
from server.accountability.pdfa import document

DEADLINE_LABELS = {
    "accept": "acceptation",
    "protocol_ack": "acquittement du protocole",
    "report": "compte rendu",
    "critical": "acquittement d'un résultat critique",
}


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def render(report: dict[str, Any], generated_at: datetime) -> bytes:
    """Pure: the PDF of a monthly report (the JSON of ``GET /api/stats/monthly``)."""
    est, f = report["establishment"], report["figures"]
    pdf = document(
        title=f"Rapport mensuel {est['code']} {report['month']}",
        author="Teleimagerie",
        created=generated_at,
        footer=f"Rapport mensuel {est['code']} {report['month']}",
    )
    pdf.add_page()
    pdf.para(f"Rapport mensuel de téléradiologie : {est['name']} ({est['code']})", 14, "B", 8)
    vol = f["volumes"]
    pdf.para(
        f"Mois : {report['month']} (heure de Paris)   Examens : {vol['exams']}   "
        f"Annulés : {vol['cancelled']}   Escalades : {f['escalations']['raised']}"
    )

    def chart(name: str, width: float) -> None:
        png = charts.render(name, f)
        pdf.image(Image.open(io.BytesIO(png)).convert("RGB"), w=width)

    pdf.heading("Volumes")
    chart("modality", 90)
    chart("weekday", 90)
    chart("hour", 150)

    pdf.add_page()
    pdf.heading("Délais par étape, au regard du contrat")
    for name, s in f["stages"].items():
        target = (
            f" ; contrat {_minutes(s['target_s'])}, tenu {s['within_target']}/{s['n']}"
            if s["target_s"]
            else ""
        )
        pdf.para(
            f"{charts.STAGE_LABELS[name]} : n={s['n']}, médiane {_minutes(s['p50_s'])}, "
            f"90e centile {_minutes(s['p90_s'])}, 95e centile {_minutes(s['p95_s'])}{target}"
        )
    chart("turnaround", 170)

    pdf.heading("Échéances manquées et escalades")
    for name, d in f["deadlines"].items():
        levels = ", ".join(f"niveau {k} : {v}" for k, v in d["escalations"].items()) or "aucune"
        pdf.para(
            f"{DEADLINE_LABELS[name]} (contrat {_minutes(d['target_s'])}) : "
            f"{d['missed']} manquée(s) ; escalades {levels}"
        )

    pdf.add_page()
    crit = f["critical"]
    pdf.heading("Résultats critiques")
    pdf.para(
        f"{crit['count']} résultat(s) critique(s), {crit['acknowledged']} acquitté(s) ; "
        f"délai médian {_minutes(crit['delays']['p50_s'])}, "
        f"90e centile {_minutes(crit['delays']['p90_s'])}, "
        f"contrat {_minutes(crit['delays']['target_s'])}"
    )
    chart("critical", 170)

    pdf.embed_file(
        basename="monthly.json",
        bytes=json.dumps(report, sort_keys=True, ensure_ascii=False).encode(),
        desc="Les chiffres du rapport (JSON)",
        mime_type="application/json",
        associated_file_relationship="Data",
        compress=True,
        modification_date=generated_at,
    )
    return bytes(pdf.output())
