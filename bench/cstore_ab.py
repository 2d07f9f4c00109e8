"""DIMSE C-STORE into two versions of the gateway, side by side, series alternated.

    bench/cstore_ab.py TREE_A TREE_B [--pairs N] [--slices 200] [--database-url-a URL ...]

Each TREE is a checkout of this repository (``git worktree add ../a REV``) run
with this machine's packages: a child process per tree seeds a fresh SQLite
database (an establishment, a CT exam in acquisition, the AE ``CT_BENCH``) and
runs the gateway as ``teleimagerie dicom`` does. DCMTK ``storescu`` then sends
a synthetic CT series carrying that exam's study UID, accession and patient
(filed, not kept aside) to A then B, B then A, and so on, one association per
series. Prints each side's median wall time and server CPU time (user + system
of the child process, from /proc, while the series was sent: the figure least
moved by the rest of a shared machine) and the paired ratios A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dicomweb.samples import ct_series  # noqa: E402

#: Run in each tree's child process, with that tree first on sys.path.
CHILD = r"""
import asyncio, json, sys
from pathlib import Path
from sqlalchemy import update
from server.accounts.service import add_establishment, add_user
from server.composition import app_context
from server.core.config import Settings, normalise_database_url
from server.core.migrate import upgrade
from server.core.models import Exam
from server.exams.service import ExamRequest, create_exam
from server.gateway.aes import add_ae
from server.gateway.listener import Gateway

work = Path(sys.argv[1])
url = normalise_database_url(f"sqlite:///{work}/bench.db")
upgrade(url)
settings = Settings(database_url=url, dicom_storage=work / "dicom", argon2_time_cost=1,
                    argon2_memory_kib=1024, argon2_parallelism=1, log_level="WARNING")
REQUEST = ExamRequest.model_validate({
    "patient": {"id": "AB-1", "name": "BENCH^Patient", "birth_date": "1950-01-01", "sex": "O"},
    "modality": "CT", "body_part": "HEAD", "clinical_question": "benchmark",
    "urgency": "emergency", "consent": True})

async def main():
    async with app_context(settings) as app:
        async with app.db() as db:
            await add_establishment(app, db, "HOPA", "Bench hospital")
            urg = await add_user(app, db, "urg", "bench password", "urgentist", "HOPA", "URG")
            exam, _ = await create_exam(db, settings, urg, REQUEST, app.now())
            await db.execute(update(Exam).where(Exam.id == exam.id).values(status="acquiring"))
            await add_ae(app, db, "CT_BENCH", "HOPA")
            await db.commit()
        gateway = Gateway(app, host="127.0.0.1", port=0)
        port = gateway.start()
        print(json.dumps({"port": port, "called": settings.dicom_ae_title,
                          "StudyInstanceUID": exam.study_instance_uid,
                          "AccessionNumber": exam.accession_number,
                          "PatientID": exam.patient_id, "PatientName": exam.patient_name,
                          "PatientBirthDate": exam.patient_birth_date.strftime("%Y%m%d"),
                          "PatientSex": exam.patient_sex}), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await asyncio.to_thread(gateway.stop)

asyncio.run(main())
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Side:
    def __init__(self, tree: Path, work: Path) -> None:
        work.mkdir()
        env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", CHILD, str(work)],
            cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())
        self.work = work
        self.sent = 0

    def send(self, slices: int, size: int) -> tuple[float, float]:
        self.sent += 1
        folder = self.work / f"series{self.sent}"
        folder.mkdir()
        attrs = {k: v for k, v in self.info.items() if k[0].isupper()}
        study = attrs.pop("StudyInstanceUID")
        files = []
        for i, data in enumerate(ct_series(slices, size, study=study, **attrs)):
            path = folder / f"{i:04d}.dcm"
            path.write_bytes(data)
            files.append(str(path))
        cpu0, t0 = cpu_s(self.proc.pid), time.perf_counter()
        subprocess.run(  # noqa: S603
            ["storescu", "-aet", "CT_BENCH", "-aec", self.info["called"], "127.0.0.1",
             str(self.info["port"]), *files],
            check=True, capture_output=True,
        )  # fmt: skip
        elapsed, cpu = time.perf_counter() - t0, cpu_s(self.proc.pid) - cpu0
        for f in files:
            os.unlink(f)
        return elapsed, cpu

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: A and B")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    storage = HERE.parent / "var" / "bench"
    storage.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=storage, prefix="cstore-ab-") as tmp:
        sides = [Side(tree, Path(tmp) / f"side{i}") for i, tree in enumerate(args.trees)]
        wall: list[list[float]] = [[], []]
        cpu: list[list[float]] = [[], []]
        try:
            for i in range(args.pairs + 1):  # the first pair warms both up, not counted
                for side in (0, 1) if i % 2 else (1, 0):
                    elapsed, used = sides[side].send(args.slices, args.size)
                    if i:
                        wall[side].append(elapsed)
                        cpu[side].append(used)
        finally:
            for s in sides:
                s.close()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.slices} x {args.size}^2 CT per series")
    for tree, w, c in zip(args.trees, wall, cpu, strict=True):
        walls = " ".join(f"{x:.2f}" for x in w)
        print(
            f"{tree}: wall median {statistics.median(w):.2f} s ({walls}); "
            f"server CPU median {statistics.median(c):.2f} s"
        )
    for name, series in (("wall", wall), ("server CPU", cpu)):
        ratios = [a / b for a, b in zip(series[0], series[1], strict=True)]
        print(f"paired A/B {name}: median {statistics.median(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
