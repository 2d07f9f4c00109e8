"""The DICOM listener for scanners (PS3.7 DIMSE over PS3.8 upper layer):
C-ECHO, C-STORE into the archive, Modality Worklist C-FIND.

pynetdicom runs each association in its own thread. The handlers do no I/O of
their own: they hand the work to the asyncio loop that runs the AppContext
(``run_coroutine_threadsafe(...).result(timeout)``), so stored instances go
through ``app.ingestor`` exactly like STOW-RS (same checks, storage, index and
room events), and the database is used from one loop only.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydicom import Dataset, dcmread
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.transport import ThreadedAssociationServer

from dicomweb.ingest import Decisions
from dicomweb.types import OUT_OF_RESOURCES, Failure, KeptAside
from server.archive.context import ArchiveContext
from server.core import audit
from server.core.identity import SystemPrincipal
from server.gateway import conformance as conf
from server.gateway import worklist
from server.gateway.aes import Caller, recognise
from server.gateway.transport import quick_acks

log = logging.getLogger("teleimagerie.dicom")
T = TypeVar("T")
# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected-permanent, DUL service-user.
RJ_PERMANENT, RJ_SERVICE_USER, RJ_CALLING_AE = 0x01, 0x01, 0x03
#: How long a rejection may take to reach the wire before the socket is closed.
RJ_SEND_S = 2.0


def reject(assoc: Association, result: int, source: int, diagnostic: int) -> None:
    """Send A-ASSOCIATE-RJ and wait until it is on the wire.

    ``send_reject`` only queues the primitive for the upper layer's thread, and
    pynetdicom closes the socket as soon as the ``EVT_REQUESTED`` handlers return:
    under load the socket could close first, and the modality saw an aborted
    connection instead of the reason (PS3.8 9.3.4). Once the PDU is sent the state
    machine is in Sta13, awaiting the transport's close (action AE-8, PS3.8 9.2).
    """
    assoc.acse.send_reject(result, source, diagnostic)
    deadline = time.monotonic() + RJ_SEND_S
    while assoc.dul.state_machine.current_state != "Sta13" and time.monotonic() < deadline:
        time.sleep(0.001)


@dataclass
class _Session:
    """What the gateway knows of one accepted association."""

    caller: Caller
    addr: str
    stored: int = 0
    aside: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    studies: set[str] = field(default_factory=set)
    #: The filing decisions of this association: a series arrives one C-STORE at
    #: a time and every slice names the same exam and patient.
    decisions: Decisions = field(default_factory=Decisions)


def _request(assoc: Association) -> A_ASSOCIATE:
    """The A-ASSOCIATE-RQ the peer sent, which pynetdicom holds from EVT_REQUESTED on."""
    primitive = assoc.requestor.primitive
    assert primitive is not None
    return primitive


def _event(name: str, **fields: Any) -> None:
    """One JSON log line; never patient data (AE titles, UIDs, counts, statuses)."""
    log.info(json.dumps({"event": name, **fields}))


class Gateway:
    """A pynetdicom AE bound to an ArchiveContext and the loop that runs it.

    ``start()`` from a coroutine on that loop (or pass ``loop``); the listener
    threads then call back into it. ``port=0`` binds a free port (tests).
    """

    def __init__(
        self,
        app: ArchiveContext,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - scanners are on the hospital network
        port: int | None = None,
        ae_title: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.app = app
        self.loop = loop
        self.host = host
        self.port = app.settings.dicom_port if port is None else port
        self.ae_title = (ae_title or app.settings.dicom_ae_title).strip()
        self.timeout_s = timeout_s
        self._server: ThreadedAssociationServer | None = None
        self._sessions: dict[int, _Session] = {}
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = 32
        ae.maximum_pdu_size = 0  # no limit on what we receive: fewer, larger PDUs
        ae.add_supported_context(conf.VERIFICATION)
        for uid in conf.STORAGE_CLASSES:
            ae.add_supported_context(uid, list(conf.TRANSFER_SYNTAXES))
        ae.add_supported_context(conf.MODALITY_WORKLIST_FIND)
        return ae

    # -- lifecycle --------------------------------------------------------

    def start(self) -> int:
        """Listen; return the bound port."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_CONN_OPEN, quick_acks),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            # Released, aborted or dropped: the connection closes in every case.
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        server = self.ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        assert server is not None  # only a blocking start returns None, once stopped
        self._server = server
        self.port = int(server.server_address[1])
        _event("dicom.listening", port=self.port, ae_title=self.ae_title)
        return self.port

    def stop(self) -> None:
        """Stop listening and end the open associations (blocks briefly: call it
        from a thread, e.g. ``await asyncio.to_thread(gateway.stop)``)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed (shutting down): it will never run
            coro.close()
            raise
        try:
            return future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    # -- association ------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        """A-ASSOCIATE-RQ: only registered calling AE titles get in (PS3.8 7.1.1.3)."""
        assoc: Association = event.assoc
        calling = str(_request(assoc).calling_ae_title).strip()
        addr = str(assoc.requestor.address)
        try:
            outcome = self._call(recognise(self.app, calling, addr))
        except Exception:
            log.exception("could not look up a calling AE title")
            reject(assoc, 0x02, 0x01, 0x01)  # transient: try again later
            return
        if isinstance(outcome, Caller):
            self._sessions[id(assoc)] = _Session(outcome, addr)
            return
        # Audited before the modality is told, so that the row exists by then.
        _event("dicom.rejected", calling_ae=calling, addr=addr, reason=outcome)
        self._audit(
            "dicom.association",
            "denied",
            addr,
            {"calling_ae": calling, "called_ae": self._called(assoc), "reason": outcome},
        )
        reject(assoc, RJ_PERMANENT, RJ_SERVICE_USER, RJ_CALLING_AE)

    @staticmethod
    def _called(assoc: Association) -> str:
        return str(_request(assoc).called_ae_title).strip()

    def _on_closed(self, event: evt.Event) -> None:
        session = self._sessions.pop(id(event.assoc), None)
        if session is None or not (session.stored or session.aside or session.failed):
            return
        detail = {
            "calling_ae": session.caller.ae_title,
            "stored": session.stored,
            "aside": session.aside,
            "failed": session.failed,
            "studies": sorted(session.studies)[:50],
        }
        _event("dicom.association.closed", **detail)
        outcome = "ok" if not session.failed else "failed"
        self._audit("dicom.store", outcome, session.addr, detail)

    def _audit(self, action: str, outcome: str, addr: str, detail: dict[str, Any]) -> None:
        try:
            self._call(
                audit.record(
                    self.app,
                    action=action,
                    outcome=outcome,
                    addr=addr,
                    at=self.app.now(),
                    detail=detail,
                )
            )
        except Exception:
            log.exception("could not write the audit row of a DICOM association")

    def _session(self, event: evt.Event) -> _Session | None:
        return self._sessions.get(id(event.assoc))

    # -- services ---------------------------------------------------------

    def _on_echo(self, event: evt.Event) -> int:
        return conf.SUCCESS

    def _on_store(self, event: evt.Event) -> int | Dataset:
        """C-STORE (PS3.4 B.2): the bytes as received, with file meta, into the
        one ingest path; its failure reasons are already PS3.4 statuses."""
        session = self._session(event)
        if session is None:
            return _status(conf.REFUSED_NOT_AUTHORIZED, "association not recognised")
        request = event.request
        assert isinstance(request, C_STORE)  # EVT_C_STORE's handler
        sop_class = str(request.AffectedSOPClassUID)
        if sop_class not in conf.STORAGE_CLASSES:
            return self._failed(session, conf.SOP_CLASS_NOT_SUPPORTED, "SOP class not supported")
        data = event.encoded_dataset(include_meta=True)
        mismatch = _mismatch(data, sop_class, str(request.AffectedSOPInstanceUID))
        if mismatch:
            return self._failed(session, conf.DATA_SET_MISMATCH, mismatch)
        principal = SystemPrincipal(
            establishment_id=session.caller.establishment_id,
            source=f"dicom:{session.caller.ae_title}",
        )
        try:
            result = self._call(
                self.app.ingestor.store(
                    data,
                    principal,
                    decisions=session.decisions,
                    sop_uid=str(request.AffectedSOPInstanceUID),
                )
            )
        except Exception:
            log.exception("C-STORE ingest failed")
            return self._failed(session, OUT_OF_RESOURCES, "archive unavailable, retry later")
        if isinstance(result, Failure):
            return self._failed(session, conf.store_status(result), result.message)
        if isinstance(result, KeptAside):
            # Kept, not lost: a warning the modality counts as stored (PS3.4 B.2.3);
            # a person files it (docs/dicomweb.md "Filing and reconciliation").
            session.aside += 1
            _event("dicom.store.aside", calling_ae=session.caller.ae_title, reason=result.reason)
            return _status(conf.COERCION, f"kept aside: {result.reason}")
        session.stored += 1
        session.studies.add(result.study_uid)
        return conf.SUCCESS

    def _failed(self, session: _Session, status: int, message: str) -> Dataset:
        key = f"0x{status:04X}"
        session.failed[key] = session.failed.get(key, 0) + 1
        _event("dicom.store.failed", calling_ae=session.caller.ae_title, status=key)
        return _status(status, message)

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        """Modality Worklist C-FIND (PS3.4 K.4.1): the calling site's exams only."""
        session = self._session(event)
        if session is None or str(event.request.AffectedSOPClassUID) != str(
            conf.MODALITY_WORKLIST_FIND
        ):
            yield conf.FIND_UNABLE_TO_PROCESS, None
            return
        try:
            query = event.identifier
            items = self._call(worklist.scheduled(self.app, session.caller.establishment_id))
            found = worklist.answers(items, query, session.caller.ae_title)
        except Exception:
            log.exception("worklist query failed")
            yield conf.FIND_UNABLE_TO_PROCESS, None
            return
        self._audit(
            "dicom.worklist",
            "ok",
            session.addr,
            {"calling_ae": session.caller.ae_title, "matches": len(found)},
        )
        for answer in found:
            if event.is_cancelled:
                yield conf.FIND_CANCEL, None
                return
            yield conf.FIND_PENDING, answer
        yield conf.SUCCESS, None


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    if code != conf.SUCCESS:
        status.ErrorComment = comment[:64]
    return status


def _mismatch(data: bytes, sop_class: str, sop_instance: str) -> str | None:
    """PS3.4 B.2.3 A900: the command and the data set must name the same instance.
    A data set that does not even parse is left to the ingestor (C000)."""
    try:
        ds = dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
    except Exception:
        return None
    if str(ds.get("SOPClassUID", "")) != sop_class:
        return "SOPClassUID differs from the C-STORE request"
    if str(ds.get("SOPInstanceUID", "")) != sop_instance:
        return "SOPInstanceUID differs from the C-STORE request"
    return None
