"""C-MOVE of a prior (PS3.4 C.4.2): we ask the hospital's PACS to send a study to a
move destination, our own Storage SCP (:class:`MoveReceiver`), which it knows by AE
title, host and port (its list of DICOM modalities). The instances then come on
associations the PACS opens to us, as C-STORE requests (PS3.4 Annex B).

Many hospital PACS offer C-MOVE and not C-GET: the PACS decides where images go, and
only to destinations it was told of. The receiver takes an instance only while a move
from that PACS is under way (``expecting``), checks it as a C-GET's (``pacs.Checker``:
the study asked for, the patient queried), and refuses any other: an instance nobody
asked for is refused and reported (``on_unsolicited``, the job audits it).

Blocking like ``server.priors.pacs`` (pynetdicom's threads); docs/priors.md "C-MOVE".
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom import Dataset, dcmread, uid
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from server.priors import pacs

log = logging.getLogger("teleimagerie.priors")

MOVE = uid.UID("1.2.840.10008.5.1.4.1.2.2.2")  # Study Root Query/Retrieve - MOVE
#: C-STORE "Refused: Not authorized" (PS3.7 C.5.1): no move under way asked for it.
NOT_AUTHORIZED = 0x0124


@dataclass(frozen=True)
class Unsolicited:
    """An instance that came to the receiver while no move from its sender was under
    way: refused; the job audits it."""

    calling_ae: str
    address: str
    study_uid: str
    sop_instance_uid: str


class MoveReceiver:
    """Our Storage SCP for C-MOVE: listens on ``bind``:``port`` as ``ae_title`` (the
    called AE title checked), for the storage classes a prior is made of."""

    def __init__(
        self,
        ae_title: str,
        bind: str,
        port: int,
        on_unsolicited: Callable[[Unsolicited], None],
        timeout_s: float = 30.0,
    ) -> None:
        self.ae_title = ae_title
        self.bind = bind
        self.port = port
        self.on_unsolicited = on_unsolicited
        self.timeout_s = timeout_s
        self._pending: dict[str, pacs.Checker] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        ae.network_timeout = self.timeout_s
        ae.dimse_timeout = self.timeout_s
        ae.acse_timeout = self.timeout_s
        for storage in pacs.STORAGE:
            ae.add_supported_context(storage, list(pacs.TRANSFER_SYNTAXES))
        server = ae.start_server(
            (self.bind, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        assert server is not None
        self._server = server
        log.info("C-MOVE destination %s listening on %s:%d", self.ae_title, self.bind, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @contextmanager
    def expecting(self, pacs_ae: str, check: pacs.Checker) -> Iterator[None]:
        """While in this block, the instances the PACS ``pacs_ae`` sends us go to
        ``check``. One move per PACS at a time (the job retrieves one study after the
        other)."""
        with self._lock:
            if pacs_ae in self._pending:
                raise pacs.PacsError(
                    "retrieve_failed", "a C-MOVE from this PACS is already under way"
                )
            self._pending[pacs_ae] = check
        try:
            yield
        finally:
            with self._lock:
                self._pending.pop(pacs_ae, None)

    def _on_store(self, event: evt.Event) -> int | Dataset:
        calling = event.assoc.requestor.ae_title.strip()
        with self._lock:
            check = self._pending.get(calling)
        data = event.encoded_dataset(include_meta=True)
        if check is not None:
            return check(data)
        try:
            head = dcmread(
                io.BytesIO(data),
                stop_before_pixels=True,
                specific_tags=["StudyInstanceUID", "SOPInstanceUID"],
            )
            study, sop = str(head.get("StudyInstanceUID", "")), str(head.get("SOPInstanceUID", ""))
        except Exception:
            study = sop = ""
        self.on_unsolicited(
            Unsolicited(calling, str(event.assoc.requestor.address), study[:64], sop[:64])
        )
        return pacs.store_status(NOT_AUTHORIZED, "no retrieval under way asked for it")


def move_study(
    peer: pacs.Peer,
    study_uid: str,
    query: pacs.Query,
    receiver: MoveReceiver,
    sink: pacs.Sink,
) -> pacs.Retrieved:
    """C-MOVE of one study (PS3.4 C.4.2) to ``receiver``; each instance it receives
    from the PACS meanwhile is checked (``pacs.Checker``), the kept ones go to ``sink``.
    The PACS answers the C-MOVE once every sub-operation is done: by then every
    instance went through the receiver."""
    check = pacs.Checker(study_uid, query, sink)
    ae = pacs.make_ae(peer)
    ae.add_requested_context(MOVE)
    assoc = pacs.associate(ae, peer)
    try:
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        with receiver.expecting(peer.ae_title, check):
            responses = assoc.send_c_move(ident, receiver.ae_title, MOVE)
            pacs.final_status(responses, check.retrieved, move_to=receiver.ae_title)
        return check.retrieved
    finally:
        if assoc.is_established:
            assoc.release()
