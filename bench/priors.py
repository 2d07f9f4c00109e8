"""A prior fetched from the hospital's PACS: Debian's Orthanc holds a CT study of N
slices of 512x512 (dicomweb.samples.ct_series); we query it (C-FIND study and series
level), retrieve it (C-GET, instances written to the archive's temp files as they come)
and store it through the archive's ingest path under no exam, as
``server.priors.retrieval`` does (docs/priors.md).

    .venv/bin/python -m bench.priors [--slices 300] [--runs 3]

Shortcut path: the job's own SQL rows and room events (a few rows per study) are left
out, and the database is a fresh SQLite file. Each run is a new study. Prints the load
average beside the figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dicomweb.ingest import Ingestor  # noqa: E402
from dicomweb.samples import ct_series  # noqa: E402
from dicomweb.storage import Storage  # noqa: E402
from dicomweb.types import DicomwebConfig, StoredInstance  # noqa: E402
from server.composition import core_context  # noqa: E402
from server.core.config import Settings  # noqa: E402
from server.core.identity import SystemPrincipal  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.priors import pacs  # noqa: E402
from server.priors.retrieval import PriorAccess  # noqa: E402
from tests.priors.orthanc import AE_TITLE, OUR_AE, Orthanc  # noqa: E402


async def one_run(orthanc: Orthanc, settings: Settings, slices: int) -> dict[str, float]:
    patient = f"BENCH-{time.monotonic_ns()}"
    study = None
    for part in ct_series(slices, PatientID=patient, StudyDate="20250101", Modality="CT"):
        study = study or _study_of(part)
        orthanc.load([part])
    assert study is not None
    peer = pacs.Peer(AE_TITLE, "127.0.0.1", orthanc.dicom_port, OUR_AE, 60)
    query = pacs.Query(patient)
    storage = Storage(settings.dicom_storage)
    written: list[Path] = []

    def sink(data: bytes) -> Path:
        fd, path = storage.new_temp()
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        written.append(path)
        return path

    async with core_context(settings) as app:
        access = PriorAccess(1, study, frozenset({patient}))
        config = DicomwebConfig(storage_root=settings.dicom_storage)
        ingestor = Ingestor(config, app.db, access, hooks=None, storage=storage)
        # The header reader processes start once per process (the worker's first
        # retrieval pays it): started before the clock, as in a worker running already.
        await asyncio.wrap_future(ingestor.warm_up())
        if ingestor.reconciling is not None:
            await ingestor.reconciling
        t0 = time.perf_counter()
        found = await asyncio.to_thread(pacs.find_studies, peer, query, "20200101-20261231")
        t1 = time.perf_counter()
        assert [s.study_uid for s in found] == [study]
        got = await asyncio.to_thread(pacs.get_study, peer, study, query, sink)
        t2 = time.perf_counter()
        assert got.kept == slices and not got.mismatched
        results = await ingestor.store_many(
            list(written), SystemPrincipal(establishment_id=1), owned=True
        )
        t3 = time.perf_counter()
    assert sum(isinstance(r, StoredInstance) for r in results) == slices
    mb = sum(p.stat().st_size for p in _stored(settings.dicom_storage)) / 1e6
    return {"find": t1 - t0, "get": t2 - t1, "store": t3 - t2, "total": t3 - t0, "mb": mb}


def _study_of(part: bytes) -> str:
    from io import BytesIO

    from pydicom import dcmread

    return str(dcmread(BytesIO(part), stop_before_pixels=True).StudyInstanceUID)


def _stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm") if p.is_file()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        orthanc = Orthanc(Path(tmp) / "orthanc")
        try:
            for run in range(args.runs):
                db = Path(tmp) / f"run{run}.db"
                url = f"sqlite+aiosqlite:///{db}"
                upgrade(url)
                settings = Settings(database_url=url, dicom_storage=Path(tmp) / f"dicom{run}")
                rows.append(asyncio.run(one_run(orthanc, settings, args.slices)))
                print(f"run {run + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()))
        finally:
            orthanc.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"{args.slices} slices ({med['mb']:.0f} MB): C-FIND {med['find']:.2f} s, "
        f"C-GET {med['get']:.2f} s ({med['mb'] / med['get']:.0f} MB/s), "
        f"store {med['store']:.2f} s, total {med['total']:.2f} s (median of {len(rows)}); "
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )


if __name__ == "__main__":
    main()
