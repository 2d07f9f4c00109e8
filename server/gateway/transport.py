"""Socket tuning of accepted associations."""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import evt

QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckSocket:
    """The accepted socket, acknowledging every read at once (Linux TCP_QUICKACK).

    DCMTK's storescu leaves Nagle's algorithm on: the last, short segment of each
    instance waits for our ACK, which the kernel delays by up to 40 ms. Quick
    ACKs took storescu of 200 small slices into a bare pynetdicom listener from
    10.5 s to 2.1 s here (docs/benchmarks.md, "Modality gateway"). The
    flag is not sticky, hence after each recv; everything else is delegated.
    """

    def __init__(self, sock: socket.socket, quickack: int) -> None:
        self._sock = sock
        self._quickack = quickack  # socket.TCP_QUICKACK, which only Linux has

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self._sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def quick_acks(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: wrap the new association's socket."""
    sock = event.assoc.dul.socket
    if QUICKACK is not None and sock is not None and isinstance(sock.socket, socket.socket):
        sock.socket = QuickAckSocket(sock.socket, QUICKACK)  # type: ignore[assignment]  # a proxy
