"""``teleimagerie hl7``: the MLLP listener for the hospitals' systems (docs/hl7.md
"Inbound"), a process of its own (Procfile ``hl7``).

python-hl7's asyncio server frames the messages (MLLP: a block between 0x0B and
0x1C 0x0D, HL7 v2.5 appendix C); each block is answered, in order, by the
acknowledgement :class:`~server.interfaces.inbound.Inbound` returns. A sender that
starts a new block before ending the previous one (a truncated frame) has the
truncated part dropped and audited, never applied; a connection that ends in the
middle of a block applies nothing of it.

With ``HL7_TLS_CERT`` and ``HL7_TLS_KEY`` the listener speaks TLS; with
``HL7_TLS_CLIENT_CA`` too it requires a client certificate signed by that CA, and
a sender registered with ``--cert-subject`` must present that subject's CN.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import ssl
from typing import Any

from hl7.mllp import HL7StreamReader, HL7StreamWriter, InvalidBlockError, start_hl7_server

from server.core import audit
from server.core.config import Settings
from server.core.context import AppContext
from server.interfaces.inbound import Inbound, Peer

log = logging.getLogger("teleimagerie.hl7")
START_BLOCK = b"\x0b"
#: The largest block read; a longer one closes the connection.
MAX_BLOCK = 1024 * 1024


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from the settings, or None (plain TCP)."""
    if not settings.hl7_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.hl7_tls_cert, settings.hl7_tls_key or None)
    if settings.hl7_tls_client_ca:
        context.load_verify_locations(settings.hl7_tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _subject(writer: HL7StreamWriter) -> str | None:
    cert: Any = writer.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _event(name: str, **fields: Any) -> None:
    """One JSON log line; never patient data."""
    log.info(json.dumps({"event": name, **fields}))


class Listener:
    """The MLLP server over an AppContext. ``port=0`` binds a free port (tests)."""

    def __init__(
        self,
        app: AppContext,
        host: str = "0.0.0.0",  # noqa: S104
        port: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = app.settings.hl7_port if port is None else port
        # Several listener processes on one port (``teleimagerie hl7 --processes N``).
        self.reuse_port = reuse_port
        self.inbound = Inbound(app)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = itertools.count(1)

    async def start(self) -> int:
        self._server = await start_hl7_server(
            self._connected,
            self.host,
            self.port,
            limit=MAX_BLOCK,
            ssl=tls_context(self.app.settings),
            reuse_port=self.reuse_port or None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        _event("hl7.listening", port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _connected(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = Peer(
            addr=str(peername[0]) if peername else "unknown",
            cert_subject=_subject(writer),
            connection=next(self._connections),
        )
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        await self._dropped(peer, "connection closed inside a block")
                    return
                except InvalidBlockError:
                    await self._dropped(peer, "bytes outside a block")
                    continue
                except ValueError:  # longer than MAX_BLOCK
                    await self._dropped(peer, "block too large")
                    return
                # A block started again inside this one: the part before was cut off.
                if START_BLOCK in block:
                    await self._dropped(peer, "truncated block followed by a new one")
                    block = block[block.rindex(START_BLOCK) + 1 :]
                reply, effects = await self.inbound.handle(block, peer)
                writer.writeblock(reply)
                await writer.drain()
                # Committed and acknowledged: now the rooms, before the next message,
                # so that a connection's events are published in its messages' order.
                try:
                    await self.inbound.publish(effects)
                except Exception:
                    log.exception("publishing an HL7 message's events failed")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.inbound.closed(peer)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    async def _dropped(self, peer: Peer, reason: str) -> None:
        _event("hl7.frame.dropped", reason=reason)
        await audit.record(
            self.app,
            action="hl7.frame",
            outcome="failed",
            addr=peer.addr,
            username="hl7",
            at=self.app.now(),
            detail={"reason": reason},
        )


async def serve(
    app: AppContext, host: str, port: int | None = None, *, reuse_port: bool = False
) -> None:
    """Run until SIGTERM or SIGINT; connections still open end with the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = Listener(app, host, port, reuse_port)
    await listener.start()
    try:
        await stop.wait()
    finally:
        await listener.stop()
