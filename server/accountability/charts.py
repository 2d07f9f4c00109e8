"""The monthly report's charts, drawn server-side with matplotlib
(docs/accountability.md "Charts").

Each chart is a function of the figures (``monthly.figures``) alone, drawn on its own
``Figure`` (no pyplot state: safe in worker threads) with the Agg backend, and saved
as a PNG on a white, opaque background: the page shows them as images, the PDF/A
embeds the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BLUE = "#2b6cb0"
GREY = "#a0aec0"
RED = "#c53030"
STAGE_LABELS = {
    "accept": "demande → acceptation",
    "protocol": "acceptation → protocole",
    "first_image": "protocole → 1re image",
    "report": "images complètes → CR signé",
    "acknowledge": "CR signé → acquittement",
}


def _modality(ax: Axes, f: dict[str, Any]) -> None:
    counts = f["volumes"]["by_modality"]
    ax.bar(list(counts), list(counts.values()), color=BLUE)
    ax.set_title("Examens par modalité")
    ax.set_ylabel("examens")


def _hour(ax: Axes, f: dict[str, Any]) -> None:
    ax.bar(range(24), f["volumes"]["by_hour"], color=BLUE)
    ax.set_xticks(range(0, 24, 2))
    ax.set_title("Examens par heure de la demande (heure de Paris)")
    ax.set_xlabel("heure")
    ax.set_ylabel("examens")


def _weekday(ax: Axes, f: dict[str, Any]) -> None:
    days = f["volumes"]["by_weekday"]
    ax.bar(list(days), list(days.values()), color=BLUE)
    ax.set_title("Examens par jour de la semaine")
    ax.set_ylabel("examens")


def _turnaround(ax: Axes, f: dict[str, Any]) -> None:
    names = list(STAGE_LABELS)
    labels = [STAGE_LABELS[n] for n in names]
    stages = f["stages"]
    p50 = [(stages[n]["p50_s"] or 0) / 60 for n in names]
    p90 = [(stages[n]["p90_s"] or 0) / 60 for n in names]
    y = list(range(len(names)))
    ax.barh([i + 0.2 for i in y], p50, height=0.4, color=BLUE, label="médiane")
    ax.barh([i - 0.2 for i in y], p90, height=0.4, color=GREY, label="90e centile")
    for i, n in enumerate(names):
        target = stages[n]["target_s"]
        if target is not None:
            ax.plot([target / 60] * 2, [i - 0.45, i + 0.45], color=RED, linewidth=2)
    ax.plot([], [], color=RED, linewidth=2, label="contrat")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("minutes")
    ax.set_title("Délais par étape")
    ax.legend(loc="lower right", fontsize=8)


def _critical(ax: Axes, f: dict[str, Any]) -> None:
    delays = [r["delay_s"] / 60 for r in f["critical"]["results"] if r["delay_s"] is not None]
    target = f["critical"]["delays"]["target_s"] / 60
    top = max([*delays, 2 * target])
    width = top / 24
    edges = [i * width for i in range(25)]
    ax.hist([d for d in delays if d <= target], bins=edges, color=BLUE, label="dans le délai")
    ax.hist([d for d in delays if d > target], bins=edges, color=RED, label="hors délai")
    ax.axvline(target, color=RED, linewidth=1.5, linestyle="--", label="contrat")
    ax.set_title("Résultats critiques : délai d'acquittement")
    ax.set_xlabel("minutes entre la signature et l'acquittement")
    ax.set_ylabel("résultats critiques")
    ax.legend(loc="upper right", fontsize=8)


# name -> (drawing, size in inches, left margin as a share of the width). Fixed
# margins rather than matplotlib's constrained layout, which draws each chart twice
# to measure it: half the time of a chart.
CHARTS: dict[str, tuple[Callable[[Axes, dict[str, Any]], None], tuple[float, float], float]] = {
    "modality": (_modality, (5.0, 3.2), 0.14),
    "hour": (_hour, (7.5, 3.2), 0.09),
    "weekday": (_weekday, (5.0, 3.2), 0.14),
    "turnaround": (_turnaround, (7.5, 3.6), 0.31),
    "critical": (_critical, (7.5, 3.2), 0.09),
}


def render(name: str, figures: dict[str, Any], dpi: int = 100) -> bytes:
    """One chart as PNG bytes; KeyError for a name not in ``CHARTS``."""
    draw, size, left = CHARTS[name]
    fig = Figure(figsize=size, dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.17, top=0.89)
    ax = fig.subplots()
    draw(ax, figures)
    ax.spines[["top", "right"]].set_visible(False)
    out = io.BytesIO()
    fig.savefig(out, format="png", facecolor="white")
    return out.getvalue()
