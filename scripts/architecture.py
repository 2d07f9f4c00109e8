"""Print docs/architecture-graph.md: server's layers and the imports between its
packages, read from the code (grimp, every import counted) and from the layers
contract in pyproject.toml.

    .venv/bin/python scripts/architecture.py > docs/architecture-graph.md
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "server-layers")
    return [[m.strip() for m in layer.split("|")] for layer in contract["layers"]]


def package_of(module: str, packages: set[str]) -> str | None:
    while module:
        if module in packages:
            return module
        module = module.rpartition(".")[0]
    return None


def package_edges(packages: set[str]) -> dict[str, set[str]]:
    graph = grimp.build_graph("server", cache_dir=None)
    edges: dict[str, set[str]] = {p: set() for p in packages}
    for module in graph.modules:
        source = package_of(module, packages)
        for imported in graph.find_modules_directly_imported_by(module):
            target = package_of(imported, packages)
            if source and target and source != target:
                edges[source].add(target)
    return edges


def node(package: str) -> str:
    return package.replace(".", "_")


def main() -> int:
    stack = layers()
    packages = {p for layer in stack for p in layer}
    edges = package_edges(packages)
    out = [
        "# server/: the import graph",
        "",
        "Generated from the code by `python scripts/architecture.py > "
        "docs/architecture-graph.md`; do not edit. Layers from the `server-layers` "
        "contract in pyproject.toml, top to bottom (packages side by side in a layer "
        "may not import each other); arrows are the imports grimp finds between "
        "packages, those inside functions and under `TYPE_CHECKING` included. "
        "What each package owns: docs/architecture.md.",
        "",
        "```mermaid",
        "flowchart TD",
    ]
    for n, layer in enumerate(stack):
        out.append(f'  subgraph L{n}["layer {len(stack) - n}"]')
        out += [f'    {node(p)}["{p.removeprefix("server.")}"]' for p in layer]
        out.append("  end")
    for source in sorted(edges):
        out += [f"  {node(source)} --> {node(t)}" for t in sorted(edges[source])]
    out += ["```", "", "| layer | package | imports |", "|---|---|---|"]
    for n, layer in enumerate(stack):
        for p in layer:
            targets = ", ".join(t.removeprefix("server.") for t in sorted(edges[p])) or "—"
            out.append(f"| {len(stack) - n} | `{p}` | {targets} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
