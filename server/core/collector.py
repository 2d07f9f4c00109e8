"""Python's garbage collector in a long-running server process.

CPython collects its youngest generation every 700 allocations net of frees, and the
whole heap every hundred young collections or so. A process that builds and drops
many small objects for each message it serves (parsed HL7 trees, ORM rows, JSON)
collects hundreds of times a second, and each full collection walks every object
the process holds since it started: the modules, SQLAlchemy's mappers and caches,
the compiled statements. Measured on the HL7 listener (docs/benchmarks.md "Eighth
pass"): about a tenth of its CPU, and the pauses were its ACKs' p99.

:func:`tune_for_serving`, called once the process is built and before it serves:
what exists then is moved out of the collector's sight (``gc.freeze``: it lives as
long as the process), and the young generation is collected every YOUNG allocations.
Cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

#: Allocations (net of frees) between two collections of the youngest generation.
YOUNG = 10_000
#: Young collections between two of the middle generation, middle ones between two
#: of the oldest (which CPython still skips while few objects have reached it).
MIDDLE = 20
OLD = 100


def tune_for_serving() -> None:
    gc.collect()  # what startup left as garbage is not kept for ever
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
