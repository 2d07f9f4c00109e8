"""An establishment's PACS as the job sees it, whatever it speaks (docs/priors.md):
search the patient's studies, retrieve one study with each instance checked. Three
kinds behind one shape: DIMSE with C-GET (``server.priors.pacs``), DIMSE with C-MOVE
to our Storage SCP (``server.priors.move``), DICOMweb (``server.priors.dicomweb_pacs``).
Blocking: the job calls them with ``asyncio.to_thread``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.priors import dicomweb_pacs, move, pacs
from server.priors.models import PacsSource

GET, MOVE, WADO = "get", "move", "wado"


class Remote(Protocol):
    @property
    def name(self) -> str:
        """The PACS as the audit names it (its AE title, or its DICOMweb root)."""
        ...

    def find_studies(self, query: pacs.Query, date_range: str) -> list[pacs.Study]: ...

    def retrieve(self, study_uid: str, query: pacs.Query, sink: pacs.Sink) -> pacs.Retrieved: ...


@dataclass(frozen=True)
class Dimse:
    peer: pacs.Peer
    receiver: move.MoveReceiver | None = None
    by_move: bool = False

    @property
    def name(self) -> str:
        return self.peer.ae_title

    def find_studies(self, query: pacs.Query, date_range: str) -> list[pacs.Study]:
        return pacs.find_studies(self.peer, query, date_range)

    def retrieve(self, study_uid: str, query: pacs.Query, sink: pacs.Sink) -> pacs.Retrieved:
        if not self.by_move:
            return pacs.get_study(self.peer, study_uid, query, sink)
        if self.receiver is None:
            raise pacs.PacsError(
                "no_move_destination",
                "this server has no C-MOVE destination (PRIORS_MOVE_PORT is not set)",
            )
        return move.move_study(self.peer, study_uid, query, self.receiver, sink)


@dataclass(frozen=True)
class Dicomweb:
    endpoint: dicomweb_pacs.Endpoint

    @property
    def name(self) -> str:
        return self.endpoint.name

    def find_studies(self, query: pacs.Query, date_range: str) -> list[pacs.Study]:
        return dicomweb_pacs.find_studies(self.endpoint, query, date_range)

    def retrieve(self, study_uid: str, query: pacs.Query, sink: pacs.Sink) -> pacs.Retrieved:
        return dicomweb_pacs.get_study(self.endpoint, study_uid, query, sink)


def remote_for(source: PacsSource, receiver: move.MoveReceiver | None) -> Remote:
    """The PACS a ``pacs_sources`` row describes."""
    if source.dicomweb_url:
        return Dicomweb(
            dicomweb_pacs.Endpoint(
                url=source.dicomweb_url,
                auth=source.dicomweb_auth,
                user=source.dicomweb_user,
                secret=source.dicomweb_secret,
                ca_file=source.dicomweb_ca,
                timeout_s=source.timeout_s,
            )
        )
    assert source.ae_title and source.host and source.port and source.calling_ae_title
    peer = pacs.Peer(
        source.ae_title, source.host, source.port, source.calling_ae_title, source.timeout_s
    )
    return Dimse(peer, receiver, by_move=source.retrieve == MOVE)
