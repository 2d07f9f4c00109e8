"""``GET /constants.js``: the close codes the browser reacts to come from
`rooms.types.CloseCode`, served, never retyped in the frontend (docs/frontend.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from rooms.types import CloseCode

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
NAMES = ("SESSION_ENDED", "FORBIDDEN", "NO_SUCH_EXAM", "SLOW_CONSUMER")


def served_close_codes(text: str) -> dict[str, int]:
    match = re.search(r"^export const CLOSE = Object\.freeze\((\{.*\})\);$", text, re.M)
    assert match, text
    codes: dict[str, int] = json.loads(match.group(1))
    return codes


async def test_the_served_close_codes_are_the_enum(http: httpx.AsyncClient) -> None:
    resp = await http.get("/constants.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/javascript; charset=utf-8"
    assert served_close_codes(resp.text) == {name: getattr(CloseCode, name) for name in NAMES}


def _modules() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(FRONTEND.glob("*.js"))}


def test_no_close_code_is_retyped_in_the_frontend() -> None:
    codes = {str(getattr(CloseCode, name)) for name in NAMES}
    found = [
        (module, code)
        for module, text in _modules().items()
        for code in codes
        if re.search(rf"\b{code}\b", text)
    ]
    assert found == []


def test_the_frontend_names_only_close_codes_that_exist() -> None:
    used = {
        (module, name)
        for module, text in _modules().items()
        for name in re.findall(r"\bCLOSE\.(\w+)", text)
    }
    assert {module for module, _ in used} >= {"room.js", "roomclient.js", "notifications.js"}
    assert {name for _, name in used} <= set(NAMES)
