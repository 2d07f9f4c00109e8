"""server/core/collector.py, in a process of its own (a frozen heap is for ever)."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import gc, json, weakref
from server.core.collector import tune_for_serving
class Cycle:
    def __init__(self):
        self.me = self
before = len(gc.get_objects())
left = weakref.ref(Cycle())  # garbage, unreachable but for its own cycle
tune_for_serving()
frozen = gc.get_freeze_count()
for _ in range(50):
    Cycle()
collected = gc.collect()
print(json.dumps({"threshold": gc.get_threshold(), "frozen": frozen, "before": before,
                  "tracked": len(gc.get_objects()), "collected": collected,
                  "startup garbage kept": left() is not None}))
"""


def test_the_startup_heap_is_frozen_and_cycles_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out)
    assert seen["threshold"] == [10_000, 20, 100]
    # What existed is out of the collector's sight, but not the startup garbage...
    assert seen["frozen"] > 0.9 * seen["before"]
    assert seen["tracked"] < 1_000
    assert not seen["startup garbage kept"]
    # ...and new cycles are still found.
    assert seen["collected"] >= 50
