"""The cost of the identity on the way out (docs/dicomweb.md "Identity on the way out").

    bench/identity_out.py [--slices 300] [--size 512] [--rounds 4]

One archive as bench/dicomweb.py's ``--local`` runs it (a child process, SQLite and
files in a temp dir under var/bench) holds one series of ``--slices`` synthetic CT
slices. Its study is switched, in SQL, between A: as stored (no correction, the
files are sent as they are) and B: the patient identity corrected after the images
were stored (what an A40 merge leaves: another PatientID and
``identity_corrected_at``), so every instance is handed out with the new identity
and the originals in Original Attributes Sequence. Each round measures A then B,
then B then A, so both see the same state of the host; each correction has its
own date, so the first request after it computes everything and the second finds
what this process kept. Prints, per side, the median time of WADO-RS retrieve of
the series and of its metadata (first and again), and the median of the paired
ratios B/A, with the load average at the time.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from pydicom import dcmread

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stow_ab import load_bench  # noqa: E402

HERE = Path(__file__).resolve().parent
DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
JSON = "application/dicom+json"
#: Each twice: the first request after a correction computes it, the second finds
#: the answer of this process (dicomweb/identity.py ``Corrected``).
KINDS = (
    ("retrieve first", "", DICOM),
    ("retrieve again", "", DICOM),
    ("metadata first", "/metadata", JSON),
    ("metadata again", "/metadata", JSON),
)


def mark(db: Path, study: str, corrected: bool) -> None:
    """A: the study's row as its instances were stored; B: corrected."""
    with sqlite3.connect(db) as conn:
        if corrected:
            conn.execute(
                "UPDATE dicomweb_studies SET patient_id = 'IPP-SURVIVOR',"
                " patient_name = 'SURVIVOR^Bench', identity_corrected_at = ?"
                " WHERE study_uid = ?",
                (time.strftime("%Y%m%d%H%M%S.", time.gmtime()) + f"{next(_seq):06d}+0000", study),
            )
        else:
            conn.execute(
                "UPDATE dicomweb_studies SET patient_id = ?, patient_name = ?,"
                " identity_corrected_at = NULL WHERE study_uid = ?",
                (STORED_ID, STORED_NAME, study),
            )


_seq = itertools.count()  # each correction its own date: nothing cached from the last
STORED_ID = "BENCH-ID"
STORED_NAME = "BENCH^Identity"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4, help="A/B pairs of each order")
    args = parser.parse_args()
    bench = load_bench()
    from dicomweb.samples import ct_series

    local = bench.Local(None, HERE.parent / "var" / "bench")
    try:
        client = bench.Client(local.base, None)
        parts = list(
            ct_series(args.slices, args.size, PatientID=STORED_ID, PatientName=STORED_NAME)
        )
        for start in range(0, len(parts), 50):
            bench.stow(client, parts[start : start + 50])
        head = dcmread(io.BytesIO(parts[0]), stop_before_pixels=True)
        study, series = str(head.StudyInstanceUID), str(head.SeriesInstanceUID)
        db = local.dir / "bench.db"
        path = f"/studies/{study}/series/{series}"
        times: dict[tuple[str, bool], list[float]] = {}
        checked = False
        for r in range(2 * args.rounds):
            for corrected in (False, True) if r % 2 == 0 else (True, False):
                mark(db, study, corrected)
                for what, suffix, accept in KINDS:
                    t0 = time.perf_counter()
                    body = bench.fetch(client, path + suffix, accept)
                    times.setdefault((what, corrected), []).append(time.perf_counter() - t0)
                    if corrected and what.startswith("metadata") and not checked:
                        assert b"IPP-SURVIVOR" in bytes(body), "the correction was not applied"
                        checked = True
        load = os.getloadavg()
        print(
            f"{args.slices} x {args.size}^2 CT slices, {2 * args.rounds} rounds A/B alternated; "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores; shared machine)"
        )
        for what, _, _ in KINDS:
            a, b = times[(what, False)], times[(what, True)]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            print(
                f"{what:15} A as stored {statistics.median(a) * 1000:8.1f} ms   "
                f"B corrected {statistics.median(b) * 1000:8.1f} ms   "
                f"B/A {statistics.median(ratios):.2f} "
                f"(+{(statistics.median(b) - statistics.median(a)) / args.slices * 1000:.2f} "
                f"ms per instance)"
            )
    finally:
        local.close()


if __name__ == "__main__":
    main()
