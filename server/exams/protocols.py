"""The acquisition protocol catalogue: a versioned data file, read once."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

CATALOGUE = Path(__file__).parent.parent / "data" / "protocols.json"


@cache
def catalogue() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return data


def find(protocol_id: str) -> dict[str, Any] | None:
    for protocol in catalogue()["protocols"]:
        if protocol["id"] == protocol_id:
            return dict(protocol)
    return None
