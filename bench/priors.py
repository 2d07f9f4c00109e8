"""A prior fetched from the hospital's PACS: Debian's Orthanc holds a CT study of N
slices of 512x512 (dicomweb.samples.ct_series); we search it and retrieve it by each
path the job has (docs/priors.md), the same study each time:

- ``get``: C-FIND (study and series level), C-GET, the instances coming back on the
  same association;
- ``move``: C-FIND, C-MOVE to our Storage SCP (``server.priors.move``), the PACS
  opening its own association to it;
- ``dicomweb``: QIDO-RS (study and series), WADO-RS of the study (Orthanc's DICOMweb
  plugin, HTTP basic authentication);

each instance checked and written to the archive's temp files as it comes, then stored
through the archive's ingest path under no exam, as ``server.priors.retrieval`` does.

    .venv/bin/python -m bench.priors [--slices 300] [--runs 3] [--paths get,move,dicomweb]

Shortcut path: the job's own SQL rows and room events (a few rows per study) are left
out, and the database is a fresh SQLite file per path and run. Each run is a new study,
retrieved by the paths in turn (their order rotates from run to run). Prints the load
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
from server.priors import dicomweb_pacs, pacs  # noqa: E402
from server.priors.move import MoveReceiver  # noqa: E402
from server.priors.remote import Dicomweb, Dimse, Remote  # noqa: E402
from server.priors.retrieval import PriorAccess  # noqa: E402
from server.testing import free_port  # noqa: E402
from tests.priors.orthanc import AE_TITLE, OUR_AE, WEB_PASSWORD, WEB_USER, Orthanc  # noqa: E402

PATHS = ("get", "move", "dicomweb")


def load_study(orthanc: Orthanc, slices: int) -> tuple[str, str]:
    patient = f"BENCH-{time.monotonic_ns()}"
    study = None
    for part in ct_series(slices, PatientID=patient, StudyDate="20250101", Modality="CT"):
        study = study or _study_of(part)
        orthanc.load([part])
    assert study is not None
    return patient, study


async def one_run(
    remote: Remote, settings: Settings, patient: str, study: str, slices: int
) -> dict[str, float]:
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
        found = await asyncio.to_thread(remote.find_studies, query, "20200101-20261231")
        t1 = time.perf_counter()
        assert [s.study_uid for s in found] == [study]
        got = await asyncio.to_thread(remote.retrieve, study, query, sink)
        t2 = time.perf_counter()
        assert got.kept == slices and not got.mismatched, got
        results = await ingestor.store_many(
            list(written), SystemPrincipal(establishment_id=1), owned=True
        )
        t3 = time.perf_counter()
    assert sum(isinstance(r, StoredInstance) for r in results) == slices
    mb = sum(p.stat().st_size for p in _stored(settings.dicom_storage)) / 1e6
    return {"find": t1 - t0, "retrieve": t2 - t1, "store": t3 - t2, "total": t3 - t0, "mb": mb}


def _study_of(part: bytes) -> str:
    from io import BytesIO

    from pydicom import dcmread

    return str(dcmread(BytesIO(part), stop_before_pixels=True).StudyInstanceUID)


def _stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm") if p.is_file()]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default=",".join(PATHS))
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    assert set(paths) <= set(PATHS), f"--paths among {PATHS}"
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
    move_port = free_port()
    receiver = MoveReceiver(OUR_AE, "127.0.0.1", move_port, lambda what: print("refused", what))
    receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        orthanc = Orthanc(Path(tmp) / "orthanc", move_port=move_port, dicomweb=True)
        peer = pacs.Peer(AE_TITLE, "127.0.0.1", orthanc.dicom_port, OUR_AE, 60)
        endpoint = dicomweb_pacs.Endpoint(
            orthanc.dicomweb_url, "basic", WEB_USER, WEB_PASSWORD, timeout_s=60
        )
        remotes: dict[str, Remote] = {
            "get": Dimse(peer),
            "move": Dimse(peer, receiver, by_move=True),
            "dicomweb": Dicomweb(endpoint),
        }
        try:
            for run in range(args.runs):
                patient, study = load_study(orthanc, args.slices)
                order = paths[run % len(paths) :] + paths[: run % len(paths)]
                for path in order:
                    db = Path(tmp) / f"run{run}-{path}.db"
                    url = f"sqlite+aiosqlite:///{db}"
                    upgrade(url)
                    settings = Settings(
                        database_url=url, dicom_storage=Path(tmp) / f"dicom{run}-{path}"
                    )
                    row = asyncio.run(one_run(remotes[path], settings, patient, study, args.slices))
                    rows[path].append(row)
                    figures = ", ".join(f"{k} {v:.2f}" for k, v in row.items())
                    print(f"run {run + 1} {path}: {figures}; {_load()}", flush=True)
        finally:
            orthanc.close()
            receiver.stop()
    for path in paths:
        med = {k: statistics.median(r[k] for r in rows[path]) for k in rows[path][0]}
        print(
            f"{path:<8} {args.slices} slices ({med['mb']:.0f} MB): search {med['find']:.2f} s, "
            f"retrieve {med['retrieve']:.2f} s ({med['mb'] / med['retrieve']:.0f} MB/s), "
            f"store {med['store']:.2f} s, total {med['total']:.2f} s "
            f"(median of {len(rows[path])}); {_load()}"
        )


if __name__ == "__main__":
    main()
