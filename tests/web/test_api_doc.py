"""docs/api.md against the code: every route, frame type, event kind, error code,
close code and CLI command the code has is documented, and every route documented
exists. A route or frame added without its line in docs/api.md fails here."""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

import pytest
from starlette.routing import Mount, Route, WebSocketRoute

import server
from rooms.types import ClientFrameType, CloseCode, ErrorCode, EventKind, ServerFrame
from server.cli import build_parser
from server.core.config import Settings
from server.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
PARAM = re.compile(r"\{[^}]*\}")


def _shape(path: str) -> str:
    """A path with its parameters unnamed: ``/api/exams/{}/report``."""
    return PARAM.sub("{}", path)


def _registered() -> set[str]:
    """``METHOD /path`` of every HTTP route and ``WS /path`` of every socket."""
    app = create_app(Settings(log_level="WARNING"))
    found: set[str] = set()

    def walk(routes: list[typing.Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount) and route.path and route.routes:
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route):
                for method in sorted((route.methods or set()) - {"HEAD"}):
                    found.add(f"{method} {_shape(prefix + route.path)}")
            elif isinstance(route, WebSocketRoute):
                found.add(f"WS {_shape(prefix + route.path)}")

    walk(app.routes, "")
    return found


def _documented() -> set[str]:
    spans = re.findall(r"`(GET|POST|PUT|DELETE|WS) (/(?:api|ws|fhir)/[^`\s?]*|/constants\.js)", DOC)
    return {f"{method} {_shape(path)}" for method, path in spans}


def test_every_route_is_documented() -> None:
    missing = _registered() - _documented()
    assert not missing, f"routes missing from docs/api.md: {sorted(missing)}"


def test_every_documented_route_exists() -> None:
    stale = _documented() - _registered()
    assert not stale, f"docs/api.md names routes the app does not have: {sorted(stale)}"


def _frame_types() -> list[str]:
    types = []
    for frame in typing.get_args(ServerFrame):
        (literal,) = typing.get_args(typing.get_type_hints(frame)["type"])
        types.append(literal)
    return types


@pytest.mark.parametrize(
    "frame_type", sorted({*ClientFrameType, *_frame_types(), "typing", "notification"})
)
def test_every_frame_type_is_documented(frame_type: str) -> None:
    assert f'"type": "{frame_type}"' in DOC


@pytest.mark.parametrize("code", sorted(ErrorCode))
def test_every_error_frame_code_is_documented(code: str) -> None:
    assert f"`{code}`" in DOC


@pytest.mark.parametrize("kind", sorted(EventKind))
def test_every_event_kind_is_documented(kind: str) -> None:
    assert re.search(rf"^\| `{re.escape(kind)}` \|", DOC, re.MULTILINE)


@pytest.mark.parametrize(
    "code", sorted(v for k, v in vars(CloseCode).items() if not k.startswith("_"))
)
def test_every_close_code_is_documented(code: int) -> None:
    assert f"| {code} |" in DOC


def _http_error_codes() -> set[str]:
    """The codes the server's Python writes into HTTP errors: ``ApiError(status,
    "code"`` and ``conflict(..., "code")``, the literal ``{"error": {"code": ...}}``
    bodies (middleware, HTTP protocol, faults) and the codes given to the framework's
    own errors."""
    codes: set[str] = set()
    for source in Path(server.__file__).parent.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        codes.update(re.findall(r'ApiError\(\s*\d{3},\s*"([a-z_]+)"', text))
        codes.update(re.findall(r'conflict\([^()]*,\s*"([a-z_]+)"\)', text))
        codes.update(re.findall(r'"error":\s*\{\s*"code":\s*"([a-z_]+)"', text))
        codes.update(re.findall(r'^\s*\d{3}: "([a-z_]+)",$', text, re.MULTILINE))
    return codes


def test_every_http_error_code_is_documented() -> None:
    codes = _http_error_codes() | {"wrong_state", "database_unavailable"}
    assert len(codes) > 20  # the scan found the codes, not nothing
    missing = sorted(c for c in codes if f"`{c}`" not in DOC)
    assert not missing, f"error codes missing from docs/api.md: {missing}"


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix}{name} ") or [prefix + name]
    return found


def test_every_cli_command_is_documented() -> None:
    commands = _commands(build_parser())
    assert "user passwd" in commands
    missing = [c for c in commands if f"`{c}" not in DOC]
    assert not missing, f"CLI commands missing from docs/api.md: {missing}"
