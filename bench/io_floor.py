"""What this machine's kernel costs a STOW, with no HTTP and no DICOM.

    bench/io_floor.py [--dir DIR] [--runs N]

Receives 200 x 530 KB (the bench's CT series) over a loopback socket pair in 256 KB
reads, and writes each 530 KB part to its own new file with ``writev`` of the
received pieces and ``fsync``, in a pool of 8 threads: the file work of a STOW,
nothing else. Prints MB/s per run, then the cost of creating an empty file and of
touching memory for the first time, the two things that move the STOW figures
of docs/benchmarks.md from one run to the next on this VM.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PART = 530_000
PARTS = 200


def stow_like(directory: Path, pool: ThreadPoolExecutor) -> float:
    payload = os.urandom(PART)
    target = Path(tempfile.mkdtemp(dir=directory))
    sender, receiver = socket.socketpair()

    def send() -> None:
        for _ in range(PARTS):
            sender.sendall(payload)
        sender.close()

    def write(name: str, pieces: list[memoryview]) -> None:
        fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.writev(fd, pieces)
            os.fsync(fd)
        finally:
            os.close(fd)

    t0 = time.perf_counter()
    threading.Thread(target=send).start()
    jobs, pieces, size = [], [], 0
    while chunk := receiver.recv(256 * 1024):
        view = memoryview(chunk)
        while view:
            take = min(len(view), PART - size)
            pieces.append(view[:take])
            view, size = view[take:], size + take
            if size == PART:
                jobs.append(pool.submit(write, str(len(jobs)), pieces))
                pieces, size = [], 0
    for job in jobs:
        job.result()
    elapsed = time.perf_counter() - t0
    receiver.close()
    shutil.rmtree(target)
    return PART * PARTS / elapsed / 1e6


def create_cost(directory: Path, count: int = 300) -> float:
    target = Path(tempfile.mkdtemp(dir=directory))
    t0 = time.perf_counter()
    for i in range(count):
        os.close(os.open(target / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    elapsed = time.perf_counter() - t0
    shutil.rmtree(target)
    return elapsed / count * 1000


def first_touch(megabytes: int = 512) -> tuple[float, float]:
    """MB/s writing into memory never touched by this process, then again."""
    size = megabytes * 1024 * 1024
    rates = []
    with mmap.mmap(-1, size) as mem:
        for _ in range(2):
            t0 = time.perf_counter()
            for offset in range(0, size, mmap.PAGESIZE):
                mem[offset] = 1
            rates.append(megabytes / (time.perf_counter() - t0))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--dir", type=Path, default=root / "var" / "bench")
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(8) as pool:
        rates = [stow_like(args.dir, pool) for _ in range(args.runs)]
    print(
        f"receive + {PARTS} files (writev, fsync) in {args.dir}: "
        f"median {statistics.median(rates):.0f} MB/s ({', '.join(f'{r:.0f}' for r in rates)})"
    )
    for d in (args.dir, Path(tempfile.gettempdir())):
        print(f"creating an empty file in {d}: {create_cost(d):.3f} ms")
    cold, warm = first_touch()
    print(f"one byte per page of 512 MB: first touch {cold:.0f} MB/s, again {warm:.0f} MB/s")


if __name__ == "__main__":
    main()
