"""STOW-RS of two versions of the archive, side by side, requests alternated.

    bench/stow_ab.py TREE_A TREE_B [--pairs N]

Each TREE is a checkout of this repository (``git worktree add ../a REV``) with
this machine's packages; each runs as bench/dicomweb.py's ``--local`` archive does
(its own child process, SQLite and files in a temp dir under var/bench). The same
synthetic 200-slice CT series as bench/dicomweb.py is sent to A then B, B then A,
and so on: both see the same state of the host, which on this VM moves single
figures by +-30 % within minutes (docs/benchmarks.md). Prints each side's median
MB/s and the median of the paired ratios B/A, the figure to read.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dicomweb_bench", HERE / "dicomweb.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: A and B")
    parser.add_argument("--pairs", type=int, default=10, help="requests to each (default 10)")
    args = parser.parse_args()
    bench = load_bench()
    storage = HERE.parent / "var" / "bench"
    servers = []
    try:
        for tree in args.trees:
            servers.append(bench.Local(None, storage, root=tree))
        clients = [bench.Client(server.base, None) for server in servers]
        rates: list[list[float]] = [[], []]
        for i in range(args.pairs + 1):  # the first pair warms both up, not counted
            for side in (0, 1) if i % 2 else (1, 0):
                series = list(bench.ct_series(200, size=512))
                elapsed, size, _ = bench.stow(clients[side], series)
                if i:
                    rates[side].append(size / elapsed / 1e6)
    finally:
        for server in servers:
            server.close()
    for tree, side in zip(args.trees, rates, strict=True):
        figures = " ".join(f"{r:.0f}" for r in side)
        print(f"{tree}: median {statistics.median(side):.0f} MB/s ({figures})")
    ratios = [rb / ra for ra, rb in zip(rates[0], rates[1], strict=True)]
    print(f"paired B/A: median {statistics.median(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
