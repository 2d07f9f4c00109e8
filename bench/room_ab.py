"""bench/room_load.py against two versions of the server, runs alternated.

    bench/room_ab.py TREE_A TREE_B [--pairs N] -- idle --connections 2000

Each TREE is a checkout of this repository (``git worktree add ../a REV``, with
this version's bench/common.py and bench/room_load.py copied in); each run is
the tree's ``bench/room_load.py`` (its server is the tree's), with this
checkout's interpreter. A then B, B then A, and so on
(bench/stow_ab.py's method): both see the same state of a shared host. Prints
each figure the runs print (joins per second, CPU per join, latency
percentiles...), its median per side, and the median of the paired ratios B/A.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

FIGURES = {
    "joins/s": re.compile(r"\(([\d.]+) connections/s\)"),
    "CPU ms/join": re.compile(r"server CPU ([\d.]+) ms per join"),
    "generator ms/join": re.compile(r"load generator CPU ([\d.]+) ms per join"),
    "KiB/socket": re.compile(r"memory per idle connection: ([\d.]+) KiB"),
    "p50 ms": re.compile(r"p50 ([\d.]+) ms"),
    "p99 ms": re.compile(r"p99 ([\d.]+) ms"),
    "storm s": re.compile(r"all rejoined and resumed in ([\d.]+) s"),
}


def run(tree: Path, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "room_load.py"), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"  {tree.name}: " + " | ".join(out.strip().splitlines()) + f" | load {load}")
    return {k: float(m.group(1)) for k, rx in FIGURES.items() if (m := rx.search(out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: A and B")
    parser.add_argument("--pairs", type=int, default=3)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    bench = argv[cut + 1 :]  # room_load.py's arguments
    results: list[list[dict[str, float]]] = [[], []]
    for i in range(args.pairs):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            results[side].append(run(args.trees[side].resolve(), bench))
    for name in FIGURES:
        if not all(name in r for side in results for r in side):
            continue
        a = [r[name] for r in results[0]]
        b = [r[name] for r in results[1]]
        ratios = [y / x for x, y in zip(a, b, strict=True) if x]
        print(
            f"{name}: A median {statistics.median(a):.2f}, B median {statistics.median(b):.2f}, "
            f"paired B/A median {statistics.median(ratios):.2f} over {len(ratios)} pairs"
        )


if __name__ == "__main__":
    main()
