"""Modality gateway benchmark: DCMTK storescu of a CT series through C-STORE,
beside STOW-RS of the same kind of series into the same archive.

    .venv/bin/python bench/gateway.py [--slices 200] [--size 512] [--database-url URL]

Everything runs on loopback against a fresh database (SQLite in a temp dir
unless --database-url names an empty one): the gateway in this process (the
way ``teleimagerie dicom`` runs it), storescu as a subprocess (one association,
one C-STORE round trip per instance, as scanners send), then the web server in
a thread for STOW-RS, once as one request with every slice and once as one
request per slice (the same round-trip pattern as C-STORE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom import dcmread  # noqa: E402
from sqlalchemy import func, select, update  # noqa: E402

from bench.dicomweb import Client, stow  # noqa: E402
from dicomweb.samples import ct_series  # noqa: E402
from dicomweb.tables import instances  # noqa: E402
from server.accounts.service import add_establishment, add_user  # noqa: E402
from server.composition import app_context  # noqa: E402
from server.core.config import Settings, normalise_database_url  # noqa: E402
from server.core.migrate import upgrade  # noqa: E402
from server.core.models import Exam, User  # noqa: E402
from server.exams.service import ExamRequest, create_exam  # noqa: E402
from server.gateway.aes import add_ae  # noqa: E402
from server.gateway.listener import Gateway  # noqa: E402
from server.testing import LiveServer  # noqa: E402

PASSWORD = "bench password, loopback only"  # noqa: S105 - a throw-away database
REQUEST = ExamRequest.model_validate(
    {
        "patient": {
            "id": "BENCH-1",
            "name": "BENCH^Patient",
            "birth_date": "1950-01-01",
            "sex": "O",
        },
        "modality": "CT",
        "body_part": "HEAD",
        "clinical_question": "benchmark",
        "urgency": "emergency",
        "consent": True,
    }
)


def exam_attrs(exam: Exam) -> dict[str, str]:
    """What a modality copies from the worklist into every slice: the exam's study
    UID, accession and patient, so that the series is filed (not kept aside)."""
    return {
        "StudyInstanceUID": exam.study_instance_uid,
        "AccessionNumber": exam.accession_number,
        "PatientID": exam.patient_id,
        "PatientName": exam.patient_name,
        "PatientBirthDate": exam.patient_birth_date.strftime("%Y%m%d"),
        "PatientSex": exam.patient_sex,
    }


async def seed(settings: Settings) -> dict[str, str]:
    """HOPA, a radiographer, a CT exam in acquisition, the AE CT_BENCH."""
    async with app_context(settings) as app, app.db() as db:
        await add_establishment(app, db, "HOPA", "Bench hospital")
        urg = await add_user(app, db, "urg", PASSWORD, "urgentist", "HOPA", "URG")
        await add_user(app, db, "man", PASSWORD, "manipulator", "HOPA", "MAN")
        exam, _ = await create_exam(db, settings, urg, REQUEST, app.now())
        # The accept/protocol commands are not what is measured: skip to acquiring.
        await db.execute(update(Exam).where(Exam.id == exam.id).values(status="acquiring"))
        await add_ae(app, db, "CT_BENCH", "HOPA")
        await db.commit()
        return exam_attrs(exam)


async def storescu(port: int, called: str, files: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "storescu", "-aet", "CT_BENCH", "-aec", called, "127.0.0.1", str(port), *files,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"storescu failed:\n{out.decode(errors='replace')[-2000:]}")


async def cstore(settings: Settings, files: list[str], associations: int) -> float:
    """storescu of ``files``, split over ``associations`` concurrent storescu;
    stops if any instance was not filed into its exam."""
    sops = [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    async with app_context(settings) as app:
        gateway = Gateway(app, host="127.0.0.1", port=0)
        port = gateway.start()
        try:
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    storescu(port, settings.dicom_ae_title, files[i::associations])
                    for i in range(associations)
                )
            )
            elapsed = time.perf_counter() - t0
        finally:
            await asyncio.to_thread(gateway.stop)
        async with app.db() as db:
            filed = await db.scalar(
                select(func.count()).select_from(instances).where(instances.c.sop_uid.in_(sops))
            )
    if filed != len(files):
        raise SystemExit(f"{len(files) - (filed or 0)} instance(s) not filed (kept aside?)")
    return elapsed


def write_series(directory: Path, slices: int, size: int, attrs: dict[str, str]) -> list[str]:
    directory.mkdir()
    files = []
    fields = dict(attrs)
    study = fields.pop("StudyInstanceUID")
    for i, data in enumerate(ct_series(slices, size, study=study, **fields)):
        path = directory / f"{i:04d}.dcm"
        path.write_bytes(data)
        files.append(str(path))
    return files


async def second_exam(settings: Settings) -> dict[str, str]:
    """Another exam, so the parallel run stores a new study rather than duplicates."""
    async with app_context(settings) as app, app.db() as db:
        urg = await db.scalar(select(User).where(User.username == "urg"))
        assert urg is not None
        exam, _ = await create_exam(db, settings, urg, REQUEST, app.now())
        await db.execute(update(Exam).where(Exam.id == exam.id).values(status="acquiring"))
        await db.commit()
        return exam_attrs(exam)


def stow_runs(
    settings: Settings, attrs: dict[str, str], slices: int, size: int
) -> tuple[float, float]:
    with LiveServer(settings) as server:
        anonymous = Client(f"{server.url}", None)
        body = json.dumps({"username": "man", "password": PASSWORD}).encode()
        status, _, data = anonymous.request(
            "POST", "/api/session", body, {"Content-Type": "application/json"}
        )
        assert status == 200, data[:200]
        client = Client(f"{server.url}/dicomweb", json.loads(data)["token"])
        fields = dict(attrs)
        study = fields.pop("StudyInstanceUID")
        batch, _, _ = stow(client, list(ct_series(slices, size, study=study, **fields)))
        single = 0.0
        for part in ct_series(slices, size, study=study, **fields):
            elapsed, _, _ = stow(client, [part])
            single += elapsed
    return batch, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=4, help="associations, second run")
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        raise SystemExit("storescu not found: install DCMTK (scripts/services.sh)")
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    try:
        url = normalise_database_url(args.database_url or f"sqlite:///{work}/bench.db")
        upgrade(url)
        settings = Settings(
            database_url=url,
            dicom_storage=work / "dicom",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            log_level="WARNING",
        )
        attrs = asyncio.run(seed(settings))
        files = write_series(work / "series", args.slices, args.size, attrs)
        total = sum(os.path.getsize(f) for f in files)
        mb = total / 1e6
        load = os.getloadavg()[0]
        elapsed = asyncio.run(cstore(settings, files, 1))
        attrs2 = asyncio.run(second_exam(settings))
        files2 = write_series(work / "series2", args.slices, args.size, attrs2)
        parallel = asyncio.run(cstore(settings, files2, args.parallel))
        batch, single = stow_runs(settings, attrs, args.slices, args.size)
        n = args.slices
        print(f"series: {n} x {args.size}x{args.size} CT, {mb:.0f} MB; load average {load:.1f}")
        for name, seconds in (
            ("C-STORE (storescu, 1 association)", elapsed),
            (f"C-STORE ({args.parallel} storescu at once)", parallel),
            ("STOW-RS, one request", batch),
            ("STOW-RS, one request per instance", single),
        ):
            rate = f"{mb / seconds:6.1f} MB/s  {n / seconds:6.1f} inst/s"
            print(f"{name:<36} {seconds:6.2f} s  {rate}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
