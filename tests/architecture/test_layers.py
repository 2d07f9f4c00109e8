"""The layers of docs/architecture.md, as the build checks them.

``lint-imports`` (import-linter, contracts in pyproject.toml) and the cycle check
below read grimp's import graph, which holds every import: those inside
functions and under ``TYPE_CHECKING`` too. Both are shown failing on a copy of
the code with a deliberate violation, so that a contract that checks nothing
would be caught here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from server.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def cycles(package: str) -> list[list[str]]:
    """The import cycles among ``package``'s modules (strongly connected components
    of more than one module, or a module importing itself), every import counted."""
    graph = grimp.build_graph(package, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:  # Tarjan's algorithm, iteratively
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def copy_of_the_code(tmp_path: Path) -> Path:
    for name in ("server", "rooms", "dicomweb"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_no_import_cycle_in_server() -> None:
    assert cycles("server") == []


def test_the_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.slow
def test_an_upward_import_inside_a_function_breaks_the_build(tmp_path: Path) -> None:
    code = copy_of_the_code(tmp_path)
    errors = code / "server" / "core" / "errors.py"
    errors.write_text(
        errors.read_text() + "\n\ndef _upward() -> None:\n    from server.web import app  # noqa\n"
    )
    result = lint_imports(code)
    assert result.returncode == 1, result.stdout
    assert "server.core.errors -> server.web.app" in result.stdout


@pytest.mark.slow
def test_an_upward_import_for_type_checking_only_breaks_the_build(tmp_path: Path) -> None:
    code = copy_of_the_code(tmp_path)
    types = code / "rooms" / "types.py"
    types.write_text(
        types.read_text()
        + "\n\nfrom typing import TYPE_CHECKING  # noqa: E402\n\n"
        + "if TYPE_CHECKING:\n    from server.core.models import Exam  # noqa: F401\n"
    )
    result = lint_imports(code)
    assert result.returncode == 1, result.stdout
    assert "rooms.types -> server.core.models" in result.stdout


@pytest.mark.slow
def test_starlette_outside_the_web_layer_breaks_the_build(tmp_path: Path) -> None:
    """Only ``server.web`` speaks Starlette: the rooms work on a transport, the
    accounts on a token, and a module below the web layer that imports the
    framework, even inside a function, fails the build."""
    code = copy_of_the_code(tmp_path)
    room = code / "server" / "live" / "room.py"
    room.write_text(
        room.read_text()
        + "\n\ndef _socket() -> None:\n    from starlette.websockets import WebSocket  # noqa\n"
    )
    result = lint_imports(code)
    assert result.returncode == 1, result.stdout
    assert "only the web layer imports Starlette and uvicorn" in result.stdout
    assert "server.live.room -> starlette" in result.stdout


@pytest.mark.slow
def test_the_cycle_check_sees_a_cycle_made_by_a_function_level_import(tmp_path: Path) -> None:
    code = copy_of_the_code(tmp_path)
    audit = code / "server" / "core" / "audit.py"  # the context imports the audit writer
    audit.write_text(
        audit.read_text()
        + "\n\ndef _back() -> None:\n    from server.core.context import AppContext  # noqa\n"
    )
    script = "from tests.architecture.test_layers import cycles; print(cycles('server'))"
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{ROOT}")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=code, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[['server.core.audit', 'server.core.context']]"


@pytest.mark.slow
def test_ae_list_imports_neither_aiortc_nor_the_room_hub(settings: Settings) -> None:
    """The CLI builds only the core services: no calls (aiortc), no rooms."""
    script = (
        "import sys\n"
        "from server.cli import main\n"
        "code = main(['ae', 'list'])\n"
        "print(code, 'aiortc' in sys.modules, 'server.live.roomhub' in sys.modules,"
        " 'server.calls.manager' in sys.modules)\n"
    )
    env = dict(os.environ, DATABASE_URL=settings.database_url)
    env["DICOM_STORAGE"] = str(settings.dicom_storage)
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 False False False"


def test_the_architecture_graph_is_the_codes() -> None:
    """docs/architecture-graph.md is generated; a change of imports regenerates it."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "scripts/architecture.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    committed = (root / "docs/architecture-graph.md").read_text()
    assert result.stdout == committed, (
        "docs/architecture-graph.md is stale: run "
        "`.venv/bin/python scripts/architecture.py > docs/architecture-graph.md`"
    )
