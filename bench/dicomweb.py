"""DICOMweb benchmark: STOW, WADO-RS retrieval, frames, QIDO latency, hook latency.

    bench/dicomweb.py BASE_URL [--token T] [--seed-studies N]
    bench/dicomweb.py --local [--database-url URL] [--storage DIR] [--seed-studies N]

Against any DICOMweb server (BASE_URL, e.g. http://127.0.0.1:8000/dicomweb), the
QIDO corpus is seeded by STOWing small instances. With ``--local`` it starts our
archive in a child process (uvicorn on 127.0.0.1 with the HTTP protocol of
``teleimagerie serve``; files in a temp dir under --storage, SQLite there unless
--database-url), indexes the corpus directly in SQL, and also measures the time
from the STOW to the ``on_stored`` hook. Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dicomweb.samples import ct_series, instance, multipart  # noqa: E402


class Client:
    """A keep-alive HTTP/1.1 client on http.client: little overhead per byte."""

    def __init__(self, base: str, token: str | None) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = url.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        self.buffer = bytearray()  # fetch's receive buffer

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        h = dict(self.headers, **(headers or {}))
        if not path.startswith(self.prefix + "/"):
            path = self.prefix + path
        try:
            self.conn.request(method, path, body=body, headers=h)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()  # the server closed an idle keep-alive connection
            self.conn.request(method, path, body=body, headers=h)
            resp = self.conn.getresponse()
        length = resp.getheader("content-length")
        if length is not None:
            buf = bytearray(int(length))
            view = memoryview(buf)
            got = 0
            while got < len(buf):
                n = resp.readinto(view[got:])
                if not n:
                    break
                got += n
            data = bytes(buf[:got])
        else:
            data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def fetch(client: Client, path: str, accept: str) -> memoryview:
    """GET with a plain socket into the client's receive buffer: http.client's
    reader would be the bottleneck of a retrieval benchmark on a small machine.
    The body is returned as a view of that buffer, valid until the next fetch:
    copying it once more took as long as receiving it here (a trivial uvicorn app
    measured 626 MB/s with the copy, 1184 MB/s without). The buffer is kept from
    one fetch to the next, as a viewer keeps its own: memory this VM's process
    touches for the first time costs ~2 ms per MB (docs/benchmarks.md), which
    would be measured instead of the server."""
    head = (
        f"GET {client.prefix}{path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        f"Accept: {accept}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in client.headers.items())
        + "\r\n"
    )
    with socket.create_connection((client.host, client.port)) as sock:
        sock.sendall(head.encode())
        status, fields, rest = read_head(sock, f"GET {path}")
        if status != 200 or b"content-length" not in fields:
            raise SystemExit(f"retrieve: {status}, headers {fields}")
        length = int(fields[b"content-length"])
        client.buffer, got = recv_body(sock, client.buffer, rest, length)
        return memoryview(client.buffer)[:got]


def read_head(sock: socket.socket, what: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """A response's status and header fields (names lower-cased), and the bytes of
    its body that came with them."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"{what}: connection closed before the headers")
        data += chunk
    header, _, rest = bytes(data).partition(b"\r\n\r\n")
    status = int(header.split()[1])
    fields = dict(line.split(b":", 1) for line in header.split(b"\r\n")[1:])
    return status, {k.strip().lower(): v.strip() for k, v in fields.items()}, rest


def recv_body(
    sock: socket.socket, buffer: bytearray, rest: bytes, length: int
) -> tuple[bytearray, int]:
    """Receive a ``length``-byte body into ``buffer`` (grown if too small), after the
    ``rest`` that came with the headers; the buffer and the bytes received (fewer
    if the peer closed early)."""
    if len(buffer) < length:
        buffer = bytearray(length)
    view = memoryview(buffer)[:length]
    view[: len(rest)] = rest
    got = len(rest)
    while got < length:
        n = sock.recv_into(view[got:], min(4 << 20, length - got))
        if not n:
            break
        got += n
    return buffer, got


def stow(client: Client, parts: list[bytes]) -> tuple[float, int, dict[str, Any]]:
    body, ctype = multipart(parts)
    t0 = time.perf_counter()
    status, _, data = client.request("POST", "/studies", body, {"Content-Type": ctype})
    elapsed = time.perf_counter() - t0
    if status != 200:
        raise SystemExit(f"STOW failed: {status} {data[:300]!r}")
    return elapsed, len(body), json.loads(data)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(base: str, token: str | None, seed: int, local: Any | None) -> None:
    client = Client(base, token)
    where = "our archive in a child process, --local" if local else "remote server"
    print(f"target: {base}  ({where})")
    rates, refs = [], []
    for _ in range(3):  # three series: one STOW varies with what the host is doing
        elapsed, size, result = stow(client, list(ct_series(200, size=512)))
        rates.append(size / elapsed / 1e6)
        refs = refs or result["00081199"]["Value"]
    print(
        f"STOW-RS   200 x 512x512 CT ({size / 1e6:.1f} MB): "
        f"{statistics.median(rates):.0f} MB/s (median of 3 series: "
        + ", ".join(f"{r:.0f}" for r in rates)
        + ")"
    )
    first = urllib.parse.urlsplit(refs[0]["00081190"]["Value"][0]).path
    series_path = first.rsplit("/instances/", 1)[0]
    accept_dicom = 'multipart/related; type="application/dicom"'
    fetch(client, series_path.removeprefix(client.prefix), accept_dicom)  # warm-up
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        data = fetch(client, series_path.removeprefix(client.prefix), accept_dicom)
        rates.append(len(data) / (time.perf_counter() - t0))
    print(
        f"WADO-RS   series retrieval ({len(data) / 1e6:.1f} MB): "
        f"{statistics.median(rates) / 1e6:.0f} MB/s (median of 5 after a warm-up; "
        f"best {max(rates) / 1e6:.0f})"
    )
    frame_paths = [
        urllib.parse.urlsplit(r["00081190"]["Value"][0]).path + "/frames/1" for r in refs
    ]
    accept = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    t0 = time.perf_counter()
    for path in frame_paths:
        status, _, _ = client.request("GET", path, headers=accept)
        assert status == 200, status
    dt = time.perf_counter() - t0
    print(
        f"frames    200 sequential GET .../frames/1 (512 KB each): "
        f"{len(frame_paths) / dt:.0f} requests/s"
    )
    if local is not None:
        hook_latency(client, local)
    qido(client, seed, local)


def hook_latency(client: Client, local: Any) -> None:
    samples = []
    for _ in range(20):
        before = len(local.hook_times())
        body, ctype = multipart([instance("CT_small.dcm")])
        t0 = time.monotonic()
        status, _, _ = client.request("POST", "/studies", body, {"Content-Type": ctype})
        assert status == 200
        samples.append((local.hook_times()[before] - t0) * 1000)
    print(
        f"hook      STOW request sent -> on_stored called (single instance): "
        f"p50 {statistics.median(samples):.1f} ms, max {max(samples):.1f} ms"
    )


def qido(client: Client, seed: int, local: Any | None) -> None:
    if seed:
        t0 = time.perf_counter()
        if local is not None:
            local.seed(seed)
            how = "indexed directly in SQL (--local)"
        else:
            for start in range(0, seed, 100):
                parts = [
                    instance(
                        "CT_small.dcm",
                        PatientID=f"BENCH{i:06d}",
                        PatientName=f"BENCH^{i:06d}",
                        StudyDate=f"2020{1 + i % 12:02d}15",
                    )
                    for i in range(start, min(seed, start + 100))
                ]
                stow(client, parts)
            how = "STOWed as small instances"
        print(f"seeded    {seed} studies, {how}, in {time.perf_counter() - t0:.1f} s")
    queries = [
        "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
        "/studies?PatientID=BENCH004321",
        "/studies?PatientName=BENCH%5E0042%2A",
        "/studies?StudyDate=20200301%2D20200331&limit=50",
        "/studies?PatientName=bench&fuzzymatching=true&limit=20",
    ]
    for q in queries:
        client.request("GET", q)
    times: list[float] = []
    for _ in range(40):
        for q in queries:
            t0 = time.perf_counter()
            status, _, _ = client.request("GET", q, headers={"Accept": "application/dicom+json"})
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200, (status, q)
    print(
        f"QIDO-RS   {len(times)} queries ({len(queries)} kinds): p50 "
        f"{percentile(times, 50):.2f} ms, p99 {percentile(times, 99):.2f} ms"
    )


class Local:
    """Our archive on uvicorn in a child process (its own GIL), SQLite in a temp
    dir unless --database-url; the child appends ``monotonic-time sop`` to a file
    from its ``on_stored`` hook, so the hook latency is measured across processes.
    ``root``: the checkout whose code the child runs (bench/stow_ab.py runs two)."""

    def __init__(self, database_url: str | None, storage: Path, root: Path | None = None) -> None:
        storage.mkdir(parents=True, exist_ok=True)
        self.tmp = tempfile.TemporaryDirectory(prefix="dicomweb-bench-", dir=storage)
        self.dir = Path(self.tmp.name)
        self.url = database_url or f"sqlite+aiosqlite:///{self.dir}/bench.db"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        root = (root or Path(__file__).parent.parent).resolve()
        script = str(root / "bench" / "dicomweb.py")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--serve", str(self.dir), str(self.port), self.url],
            env=dict(os.environ, PYTHONPATH=str(root)),
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("the archive did not start") from None
                time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicomweb"

    def hook_times(self) -> list[float]:
        path = self.dir / "hooks.log"
        if not path.exists():
            return []
        return [float(line.split()[0]) for line in path.read_text().splitlines() if line]

    def seed(self, n: int) -> None:
        from dicomweb.tables import studies
        from dicomweb.testing import create_engine

        async def insert() -> None:
            engine = create_engine(self.url)
            async with engine.begin() as conn:
                for start in range(0, n, 1000):
                    rows = [
                        {
                            "study_uid": f"2.25.{uuid.uuid4().int}",
                            "patient_name": f"BENCH^{i:06d}",
                            "patient_name_key": f"BENCH^{i:06d}",
                            "patient_id": f"BENCH{i:06d}",
                            "patient_birth_date": "19500101",
                            "patient_sex": "F",
                            "study_date": f"2020{1 + i % 12:02d}15",
                            "study_time": "120000",
                            "accession_number": f"A{i}",
                            "study_description": "Bench CT",
                            "modalities": "CT",
                            "referring_physician_name": "",
                            "referring_physician_key": "",
                            "study_id": str(i),
                            "num_series": 1,
                            "num_instances": 1,
                            "attrs": "{}",
                            "created_at": 0,
                        }
                        for i in range(start, min(n, start + 1000))
                    ]
                    await conn.execute(studies.insert(), rows)
            await engine.dispose()

        asyncio.run(insert())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.tmp.cleanup()


def serve(directory: str, port: int, url: str) -> None:
    """The child process of ``--local``."""
    import uvicorn
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from dicomweb import DicomwebConfig, StoredInstance, create_dicomweb_app
    from dicomweb.tables import metadata
    from dicomweb.testing import TokenAccess, create_engine, mounted

    async def create() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        await engine.dispose()

    asyncio.run(create())
    log = open(Path(directory) / "hooks.log", "a", buffering=1)  # noqa: SIM115

    class Hooks:
        async def on_stored(self, stored: StoredInstance) -> None:
            log.write(f"{time.monotonic()} {stored.sop_uid}\n")

    config = DicomwebConfig(storage_root=Path(directory) / "dicom")
    app = create_dicomweb_app(
        config, async_sessionmaker(create_engine(url)), TokenAccess(), Hooks()
    )
    app.state.dicomweb.ingestor.warm_up()  # as `teleimagerie serve` does at start-up
    # As `teleimagerie serve` does with GC_FREEZE (docs/configuration.md): what is
    # loaded at startup stays out of the collector's full passes, which otherwise
    # walk it every few hundred requests (30 ms each here, the QIDO p99).
    if os.environ.get("GC_FREEZE", "1") != "0":
        gc.collect()
        gc.freeze()
    from server.web.httpserver import LeanHttpProtocol

    # The HTTP protocol ``teleimagerie serve`` runs (server/web/httpserver.py).
    uvicorn.run(
        mounted(app), host="127.0.0.1", port=port, log_level="warning", http=LeanHttpProtocol
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url", nargs="?", help="e.g. http://127.0.0.1:8000/dicomweb")
    parser.add_argument("--token", help="bearer token")
    parser.add_argument(
        "--seed-studies",
        type=int,
        default=10_000,
        help="studies to index before measuring QIDO (0: use what is there)",
    )
    parser.add_argument("--local", action="store_true", help="run our archive in a child process")
    parser.add_argument("--database-url", help="with --local: SQLAlchemy async URL")
    parser.add_argument(
        "--storage",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "var" / "bench",
        help="with --local: where the archive's files go (a temp dir in it, removed "
        "after; default var/bench, beside make run's var/dicom)",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
    elif args.local:
        local = Local(args.database_url, args.storage)
        try:
            run(local.base, None, args.seed_studies, local)
        finally:
            local.close()
    elif args.base_url:
        run(args.base_url, args.token, args.seed_studies, None)
    else:
        parser.error("give BASE_URL or --local")


if __name__ == "__main__":
    main()
