"""The served path: images pushed to an exam and read at once, through
``teleimagerie serve`` with real logins, beside Orthanc in the same run.

    .venv/bin/python bench/served.py [--database sqlite|postgresql|both] [--runs N]
                                     [--slices 200] [--no-orthanc]
    make bench-served            # installs Orthanc and DCMTK with apt when missing

For each database (SQLite in a temp dir; PostgreSQL on a database the bench
creates on 127.0.0.1:5432 and drops after), a fresh schema gets an establishment,
an urgentist, a radiographer, a radiologist (Argon2 at the production settings)
and the AE title ``CT_BENCH``. ``teleimagerie serve`` and ``teleimagerie dicom``
then run as subprocesses; each user logs in through ``POST /api/session`` and
every request below carries the session token the login gave (a session lookup
as in production, not the ``--local`` token check of bench/dicomweb.py).

Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) runs from a config file
in a temp dir: free ports, the DICOMweb plugin, no authentication, its default
SQLite index and file storage. Both get the same workload from the same client
(bench/dicomweb.py's keep-alive ``http.client`` for small requests and its plain
socket reader for large bodies, plus dicomweb-client's ``retrieve_series``):

- the urgentist creates an exam (``POST /api/exams``), the radiologist accepts
  it; the radiographer STOWs a synthetic 200 x 512x512 CT series into it (the
  exam's StudyInstanceUID, accession and patient), four times, each a new series;
- after each STOW, at once, the radiologist reads it: series 1 as one WADO-RS
  retrieval; series 2 as OHIF does (series metadata, then ``frames/1`` of every
  instance, one after the other on one connection); series 3 with ``frames/1``
  over 4 connections at once; series 4 ``/rendered`` of 20 instances and the
  series thumbnail (Orthanc's plugin has no thumbnail: n/a);
- warm reads: series 1 five times (median), series 2's frames again, its
  metadata again, dicomweb-client ``retrieve_series`` of series 1 (median of 3);
- DCMTK ``storescu`` of another such series (files on disk, one association)
  into the gateway, and into Orthanc.

Prints, per measure, ours / Orthanc / ratio (the ratio is "how many times
better ours is": MB/s ours / theirs, seconds theirs / ours), then warm series
retrieval against bench/io_floor.py's receive-and-write limit measured in the
same run. Everything is on loopback on the same machine, so the ratios within a
run are what to read, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dicomweb import Client, read_head, recv_body  # noqa: E402
from bench.io_floor import stow_like  # noqa: E402
from dicomweb.samples import ct_series, multipart  # noqa: E402
from server.testing import free_port  # noqa: E402

PASSWORD = "served bench password, loopback only"  # noqa: S105 - a throw-away database
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
PATIENT = {"id": "SERVED-1", "name": "SERVED^Patient", "birth_date": "1950-01-01", "sex": "O"}
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


# -- the client ---------------------------------------------------------------


class Reader:
    """GET of a large body over a plain socket into a buffer kept between calls
    (bench/dicomweb.py ``fetch``), reading either a Content-Length body or a
    chunked one: Orthanc and we may answer either way."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/")
        self.headers = headers
        self.buffer = bytearray(1 << 20)

    def get(self, path: str, accept: str) -> int:
        head = (
            f"GET {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: {accept}\r\nConnection: close\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            + "\r\n"
        )
        with socket.create_connection((self.host, self.port)) as sock:
            sock.sendall(head.encode())
            status, fields, rest = read_head(sock, f"GET {path}")
            if status != 200:
                raise SystemExit(f"GET {path}: {status} {rest[:300]!r}")
            if b"content-length" in fields:
                return self._fixed(sock, rest, int(fields[b"content-length"]))
            return self._until_close(sock, rest, fields.get(b"transfer-encoding") == b"chunked")

    def reserve(self, size: int) -> None:
        """A buffer of ``size`` bytes with every page touched: a viewer's buffers
        are warm, and this VM charges ~1-2 ms per MB a process touches first
        (docs/benchmarks.md), which would be counted against the server."""
        if len(self.buffer) < size:
            self.buffer = bytearray(size)
        view = memoryview(self.buffer)
        for offset in range(0, size, 4096):
            view[offset] = 1

    def _fixed(self, sock: socket.socket, rest: bytes, length: int) -> int:
        self.buffer, got = recv_body(sock, self.buffer, rest, length)
        return got

    def _until_close(self, sock: socket.socket, rest: bytes, chunked: bool) -> int:
        view = memoryview(self.buffer)
        view[: len(rest)] = rest
        got = len(rest)
        while True:
            if got == len(self.buffer):
                grown = bytearray(2 * len(self.buffer))
                grown[:got] = self.buffer
                self.buffer = grown
                view = memoryview(self.buffer)
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
        if not chunked:
            return got
        body, total, pos = bytes(view[:got]), 0, 0  # chunk sizes only: the payload size
        while True:
            end = body.index(b"\r\n", pos)
            size = int(body[pos:end].split(b";")[0], 16)
            if size == 0:
                return total
            total += size
            pos = end + 2 + size + 2


@dataclass
class Target:
    """One archive as the bench sees it: its DICOMweb root and each role's headers."""

    name: str
    base: str  # http://host:port/dicomweb-root
    reader: dict[str, str]  # the radiologist's headers
    writer: dict[str, str]  # the radiographer's headers
    dimse_port: int
    called_ae: str
    new_study: Callable[[], dict[str, str]]  # attributes a series needs to be filed
    figures: dict[str, float] = field(default_factory=dict)
    stows: list[float] = field(default_factory=list)

    def client(self, headers: dict[str, str]) -> Client:
        c = Client(self.base, None)
        c.headers = dict(headers)
        return c


def series(target: Target, slices: int, study: dict[str, str]) -> list[bytes]:
    return list(ct_series(slices, 512, study=study["StudyInstanceUID"], **_attrs(study)))


def _attrs(study: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in study.items() if k != "StudyInstanceUID"}


def stow(target: Target, client: Client, parts: list[bytes]) -> tuple[float, int, list[str]]:
    body, ctype = multipart(parts)
    t0 = time.perf_counter()
    status, _, data = client.request("POST", "/studies", body, {"Content-Type": ctype})
    elapsed = time.perf_counter() - t0
    if status != 200:
        raise SystemExit(f"{target.name}: STOW {status} {data[:400]!r}")
    answer = json.loads(data)
    failed = answer.get("00081198", {}).get("Value", [])
    if failed:
        raise SystemExit(f"{target.name}: STOW refused {len(failed)} instances")
    urls = [r["00081190"]["Value"][0] for r in answer["00081199"]["Value"]]
    for r in answer["00081199"]["Value"]:
        if "00081196" in r:  # WarningReason: kept aside, not filed: not what is measured
            raise SystemExit(f"{target.name}: instances kept aside: {r}")
    paths = [urllib.parse.urlsplit(u).path for u in urls]
    prefix = urllib.parse.urlsplit(target.base).path.rstrip("/")
    return elapsed, len(body), [p.removeprefix(prefix) for p in paths]


def workload(target: Target, slices: int, workdir: Path) -> Iterator[None]:
    """Everything measured on one archive, one step at a time (the caller runs
    the archives' steps in turn, so that each measure of each archive meets
    the same state of the host); the figures go to ``target.figures``."""
    f = target.figures
    writer = target.client(target.writer)
    reader = target.client(target.reader)
    big = Reader(target.base, target.reader)
    stows: list[float] = []
    instances: list[list[str]] = []
    for i in range(1, 5):
        study = target.new_study()
        parts = series(target, slices, study)
        yield  # the series is made outside the step
        elapsed, size, paths = stow(target, writer, parts)
        stows.append(size / elapsed / 1e6)
        instances.append(paths)
        series_path = paths[0].rsplit("/instances/", 1)[0]
        if i == 1:  # first read of a whole series
            big.reserve(len(parts) * len(parts[0]) + (1 << 20))
            t0 = time.perf_counter()
            got = big.get(series_path, DICOM_ACCEPT)
            f["series_first"] = got / (time.perf_counter() - t0) / 1e6
            f["series_bytes"] = got
        elif i == 2:  # OHIF: the series' metadata, then frames/1 of each instance
            t0 = time.perf_counter()
            _get(reader, series_path + "/metadata", "application/dicom+json")
            f["metadata_first"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            for p in paths:
                _get(reader, p + "/frames/1", FRAMES_ACCEPT)
            f["frames_first"] = time.perf_counter() - t1
            f["ohif_first"] = time.perf_counter() - t0
        elif i == 3:  # frames over 4 connections at once
            f["frames_conc_first"] = _concurrent_frames(target, paths, 4)
        else:  # rendered of 20 instances, then the series thumbnail
            t0 = time.perf_counter()
            for p in paths[:: max(1, len(paths) // 20)][:20]:
                _get(reader, p + "/rendered", "image/jpeg")
            f["rendered_first"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            ok = _get(reader, series_path + "/thumbnail", "image/jpeg", allow_missing=True)
            f["thumbnail_first"] = time.perf_counter() - t0 if ok else float("nan")
    f["stow"] = statistics.median(stows)
    target.stows = stows
    yield
    series1 = instances[0][0].rsplit("/instances/", 1)[0]
    rates = []
    for _ in range(5):
        big.reserve(len(big.buffer))
        t0 = time.perf_counter()
        got = big.get(series1, DICOM_ACCEPT)
        rates.append(got / (time.perf_counter() - t0) / 1e6)
    f["series_warm"] = statistics.median(rates)
    yield
    t0 = time.perf_counter()
    for p in instances[1]:
        _get(reader, p + "/frames/1", FRAMES_ACCEPT)
    f["frames_warm"] = time.perf_counter() - t0
    yield
    f["frames_conc_warm"] = _concurrent_frames(target, instances[2], 4)
    series2 = instances[1][0].rsplit("/instances/", 1)[0]
    t0 = time.perf_counter()
    _get(reader, series2 + "/metadata", "application/dicom+json")
    f["metadata_warm"] = time.perf_counter() - t0
    yield
    # Warm frames again in 10 short rounds, each archive's round next to the
    # others' in time: the median round is the per-request figure least moved by
    # what else the machine does.
    rounds = []
    for r in range(10):
        batch = instances[1][r * 20 : r * 20 + 20] or instances[1][:20]
        t0 = time.perf_counter()
        for p in batch:
            _get(reader, p + "/frames/1", FRAMES_ACCEPT)
        rounds.append((time.perf_counter() - t0) / len(batch) * 1000)
        yield
    f["frames_rounds"] = statistics.median(rounds)
    f["dwc_series_warm"] = _dicomweb_client(target, series1)
    # DIMSE C-STORE of another series, from files, one association.
    study = target.new_study()
    folder = workdir / f"cstore-{target.name}"
    folder.mkdir()
    files = []
    for n, data in enumerate(series(target, slices, study)):
        path = folder / f"{n:04d}.dcm"
        path.write_bytes(data)
        files.append(str(path))
    yield
    t0 = time.perf_counter()
    out = subprocess.run(
        ["storescu", "-aet", "CT_BENCH", "-aec", target.called_ae,
         "127.0.0.1", str(target.dimse_port), *files],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    f["cstore"] = time.perf_counter() - t0
    if out.returncode != 0 or "Warning" in out.stdout + out.stderr:
        raise SystemExit(f"{target.name}: storescu {out.returncode}\n{out.stderr[-2000:]}")
    shutil.rmtree(folder)


def interleave(steps: list[Iterator[None]]) -> None:
    """Run the archives' steps in turn, the order reversed at every step."""
    live = list(steps)
    flip = False
    while live:
        for step in reversed(live) if flip else list(live):
            try:
                next(step)
            except StopIteration:
                live.remove(step)
        flip = not flip


def _get(client: Client, path: str, accept: str, allow_missing: bool = False) -> bool:
    status, _, data = client.request("GET", path, headers={"Accept": accept})
    if allow_missing and status in (400, 404, 406):
        return False
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {data[:300]!r}")
    return True


def _concurrent_frames(target: Target, paths: list[str], connections: int) -> float:
    clients = [target.client(target.reader) for _ in range(connections)]

    def run(k: int) -> None:
        for p in paths[k::connections]:
            _get(clients[k], p + "/frames/1", FRAMES_ACCEPT)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(run, range(connections)))
    return time.perf_counter() - t0


def _dicomweb_client(target: Target, series_path: str) -> float:
    from dicomweb_client.api import DICOMwebClient

    _, study, _, series_uid = series_path.strip("/").split("/")
    client = DICOMwebClient(url=target.base, headers=target.reader)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        datasets = client.retrieve_series(study, series_uid)
        times.append(time.perf_counter() - t0)
        assert datasets, "retrieve_series returned nothing"
    return statistics.median(times)


# -- our server -----------------------------------------------------------------


class Ours:
    """``teleimagerie serve`` and ``teleimagerie dicom`` on a fresh database."""

    def __init__(self, database: str, workdir: Path, root: Path = ROOT, name: str = "ours") -> None:
        from server.core.config import normalise_database_url
        from server.core.migrate import upgrade

        self.workdir, self.root, self.name = workdir, root, name
        self.pg_name: str | None = None
        if database == "postgresql":
            self.pg_name = f"served_bench_{os.getpid()}_{name}"
            _psql(f'DROP DATABASE IF EXISTS "{self.pg_name}"')
            _psql(f'CREATE DATABASE "{self.pg_name}"')
            url = f"postgresql://postgres@127.0.0.1:5432/{self.pg_name}"
        else:
            url = f"sqlite:///{workdir}/{name}.db"
        self.url = normalise_database_url(url)
        upgrade(self.url)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "DICOM_STORAGE": str(workdir / f"dicom-{name}"),
            "PYTHONPATH": str(root),
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)
        asyncio.run(self._seed())
        self.port, self.dimse_port = free_port(), free_port()
        cmd = [sys.executable, "-m", "server.cli"]
        self.procs = [
            subprocess.Popen([*cmd, "serve", "--port", str(self.port)], env=self.env, cwd=root),
            subprocess.Popen(
                [*cmd, "dicom", "--host", "127.0.0.1", "--port", str(self.dimse_port)],
                env=self.env,
                cwd=root,
            ),
        ]
        _wait_port(self.port, self.procs[0])
        _wait_port(self.dimse_port, self.procs[1])
        self.tokens = {role: self._login(role) for role in ("urg", "man", "rad")}

    async def _seed(self) -> None:
        from server.accounts.service import add_establishment, add_user
        from server.composition import app_context
        from server.core.config import Settings
        from server.gateway.aes import add_ae

        settings = Settings.from_env(self.env)
        async with app_context(settings) as app, app.db() as db:
            await add_establishment(app, db, "HOPA", "Bench hospital")
            await add_user(app, db, "urg", PASSWORD, "urgentist", "HOPA", "URG")
            await add_user(app, db, "man", PASSWORD, "manipulator", "HOPA", "MAN")
            await add_user(app, db, "rad", PASSWORD, "radiologist", None, "RAD")
            await add_ae(app, db, "CT_BENCH", "HOPA")
            await db.commit()

    def _login(self, username: str) -> str:
        client = Client(f"http://127.0.0.1:{self.port}", None)
        body = json.dumps({"username": username, "password": PASSWORD}).encode()
        status, _, data = client.request(
            "POST", "/api/session", body, {"Content-Type": "application/json"}
        )
        if status != 200:
            raise SystemExit(f"login {username}: {status} {data[:200]!r}")
        token: str = json.loads(data)["token"]
        return token

    def new_study(self) -> dict[str, str]:
        """The ER doctor's request, accepted by the radiologist: what a series
        must carry to be filed into it."""
        api = Client(f"http://127.0.0.1:{self.port}", None)
        request = {
            "patient": PATIENT,
            "modality": "CT",
            "body_part": "HEAD",
            "clinical_question": "served-path benchmark",
            "urgency": "emergency",
            "consent": True,
        }
        api.headers = {"Authorization": f"Bearer {self.tokens['urg']}"}
        status, _, data = api.request(
            "POST", "/api/exams", json.dumps(request).encode(), {"Content-Type": "application/json"}
        )
        if status != 201:
            raise SystemExit(f"POST /api/exams: {status} {data[:300]!r}")
        exam = json.loads(data)
        api.headers = {"Authorization": f"Bearer {self.tokens['rad']}"}
        status, _, data = api.request("POST", f"/api/exams/{exam['id']}/accept", b"{}", {
            "Content-Type": "application/json"
        })  # fmt: skip
        if status != 200:
            raise SystemExit(f"accept: {status} {data[:300]!r}")
        return {
            "StudyInstanceUID": exam["study_instance_uid"],
            "AccessionNumber": exam["accession_number"],
            "PatientID": PATIENT["id"],
            "PatientName": PATIENT["name"],
            "PatientBirthDate": PATIENT["birth_date"].replace("-", ""),
            "PatientSex": PATIENT["sex"],
        }

    def target(self) -> Target:
        return Target(
            name=self.name,
            base=f"http://127.0.0.1:{self.port}/dicomweb",
            reader={"Authorization": f"Bearer {self.tokens['rad']}"},
            writer={"Authorization": f"Bearer {self.tokens['man']}"},
            dimse_port=self.dimse_port,
            called_ae="TELEIMAGERIE",
            new_study=self.new_study,
        )

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.pg_name:
            _psql(f'DROP DATABASE IF EXISTS "{self.pg_name}"')


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-q", PG_ADMIN, "-c", sql], check=True, capture_output=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args} exited with {proc.returncode}") from None
            time.sleep(0.2)
    raise SystemExit(f"{proc.args} did not listen on {port}")


# -- Orthanc ----------------------------------------------------------------------


class Orthanc:
    """Debian's Orthanc with its DICOMweb plugin, from a config file in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not Path(binary).exists() or not Path(ORTHANC_PLUGIN).exists():
            raise SystemExit("Orthanc not found: `make bench-served` installs it, or --no-orthanc")
        self.port, self.dimse_port = free_port(), free_port()
        root = workdir / "orthanc"
        root.mkdir()
        config = {
            "Name": "served-bench",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.port,
            "DicomPort": self.dimse_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [ORTHANC_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "StorageCompression": False,
        }
        path = root / "orthanc.json"
        path.write_text(json.dumps(config))
        self.log = (root / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([binary, str(path)], stdout=self.log, stderr=self.log)
        _wait_port(self.port, self.proc)  # type: ignore[arg-type]
        _wait_port(self.dimse_port, self.proc)  # type: ignore[arg-type]

    def target(self) -> Target:
        from pydicom.uid import generate_uid

        return Target(
            name="orthanc",
            base=f"http://127.0.0.1:{self.port}/dicom-web",
            reader={},
            writer={},
            dimse_port=self.dimse_port,
            called_ae="ORTHANC",
            new_study=lambda: {"StudyInstanceUID": generate_uid()},
        )

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- the table ----------------------------------------------------------------------

# (key, label, kind): "rate" higher is better, "time" lower is better.
MEASURES = [
    ("stow", "STOW-RS of the series (median of 4), MB/s", "rate"),
    ("series_first", "WADO-RS series, first read after the STOW, MB/s", "rate"),
    ("metadata_first", "series metadata, first read, s", "time"),
    ("frames_first", "frames/1 of each instance, sequential, first read, s", "time"),
    ("ohif_first", "OHIF pattern (metadata + frames), first read, s", "time"),
    ("frames_conc_first", "frames/1, 4 connections, first read, s", "time"),
    ("rendered_first", "/rendered of 20 instances, first read, s", "time"),
    ("thumbnail_first", "series /thumbnail, first read, s", "time"),
    ("series_warm", "WADO-RS series, warm (median of 5), MB/s", "rate"),
    ("frames_warm", "frames/1 of each instance, sequential, warm, s", "time"),
    ("frames_conc_warm", "frames/1, 4 connections, warm, s", "time"),
    ("frames_rounds", "frames/1, warm, 10 alternated rounds of 20: median ms a request", "time"),
    ("metadata_warm", "series metadata, warm, s", "time"),
    ("dwc_series_warm", "dicomweb-client retrieve_series, warm (median of 3), s", "time"),
    ("cstore", "DIMSE C-STORE of the series (storescu, 1 association), s", "time"),
]


def table(targets: list[Target]) -> str:
    """One column per archive, then ours / each other (how many times better)."""
    others = targets[1:]
    head = ["measure"] + [t.name for t in targets] + [f"ours / {t.name}" for t in others]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, label, kind in MEASURES:
        values = [t.figures.get(key, float("nan")) for t in targets]
        fmt = "{:.0f}" if kind == "rate" else "{:.3f}"
        cells = [fmt.format(v) if v == v else "n/a" for v in values]
        a = values[0]
        for b in values[1:]:
            ratio = a / b if kind == "rate" else b / a
            cells.append(f"{ratio:.2f}" if ratio == ratio else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def io_floor(workdir: Path) -> float:
    with ThreadPoolExecutor(8) as pool:
        return statistics.median(stow_like(workdir, pool) for _ in range(3))


def one_run(
    database: str, slices: int, with_orthanc: bool, storage: Path, baseline: Path | None
) -> None:
    storage.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="served-", dir=storage))
    servers: list[Ours | Orthanc] = []
    try:
        load = os.getloadavg()[0]
        servers.append(Ours(database, workdir))
        if baseline is not None:
            servers.append(Ours(database, workdir, root=baseline.resolve(), name="before"))
        if with_orthanc:
            servers.append(Orthanc(workdir))
        targets = [server.target() for server in servers]
        interleave([workload(target, slices, workdir) for target in targets])
        floor = io_floor(workdir)
        mb = targets[0].figures["series_bytes"] / 1e6
        print(
            f"\n## {database}, {slices} x 512x512 CT ({mb:.0f} MB a series), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
            f"{load:.1f} before, {os.getloadavg()[0]:.1f} after\n"
        )
        print(table(targets))
        for target in targets:
            stows = ", ".join(f"{r:.0f}" for r in target.stows)
            print(f"{target.name}: the 4 STOWs {stows} MB/s")
        warm = targets[0].figures["series_warm"]
        print(
            f"warm series, ours: {warm:.0f} MB/s = {warm / floor:.0%} of bench/io_floor.py's "
            f"receive + write limit in the same run ({floor:.0f} MB/s)",
            flush=True,
        )
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--no-orthanc", action="store_true", help="leave Orthanc out")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of this repository, measured as 'before' in the same run",
    )
    parser.add_argument(
        "--storage", type=Path, default=ROOT / "var" / "bench", help="where the temp dirs go"
    )
    args = parser.parse_args()
    if shutil.which("storescu") is None:
        raise SystemExit("storescu not found: install DCMTK (scripts/services.sh)")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    for _ in range(args.runs):
        for database in databases:
            one_run(database, args.slices, not args.no_orthanc, args.storage, args.baseline)


if __name__ == "__main__":
    main()
