"""Applying inbound HL7 v2 messages (docs/hl7.md "Inbound"): each message all or
nothing, one acknowledgement each, sent once the message is committed.

:meth:`Inbound.handle` takes the bytes of one MLLP block and returns the bytes of
its ACK. The sender must be registered (server/interfaces/senders.py), else AR.
Its changes, its stored ACK and its audit rows commit together, with those of the
messages that arrived at the same time on other connections (server/interfaces/group.py);
when anything in the message is wrong its changes are rolled back whole, so nothing
is half-applied, and the AE that says why is stored and audited instead. A message
whose control ID this sender used before meets the unique key of ``hl7_messages``
and gets the stored ACK again, having changed nothing. Exam events are published
after the commit, through server/exams/publish.py like every other writer's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import hl7

from server.core import audit
from server.core.batching import Batcher
from server.core.channels import notifications
from server.core.context import AppContext
from server.core.models import Exam, ExamEvent
from server.exams import routing
from server.exams.publish import event_frames, replan_many
from server.interfaces import hl7_in
from server.interfaces.effects import Effects
from server.interfaces.group import Outcome, Peer, Received, apply_group, internal_failure
from server.interfaces.hl7_in import Header, Hl7Error
from server.interfaces.senders import Sender, recognise

__all__ = ["Inbound", "Peer"]

log = logging.getLogger("teleimagerie.hl7")
#: How long a sender's registration is kept in memory by a running listener.
SENDER_TTL_S = 5.0
#: The most messages applied in one transaction.
GROUP_LIMIT = 100
#: A connection that sent a message this recently is expected to send the next one
#: as soon as it has its ACK (original mode)...
ACTIVE_S = 1.0
#: ...and a group waits this long at most for the messages of those connections.
LINGER_S = 0.002


class Inbound:
    """The inbound message service of one process, over its AppContext."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._senders: dict[tuple[str, str], tuple[float, Sender | str]] = {}
        # The messages of every connection queue here, in order, and those that
        # arrived together are applied in one transaction (server/interfaces/group.py);
        # one group is written at a time, so SQLite's single writer never waits in
        # its busy handler, which sleeps between its retries.
        # A group waits (LINGER_S at most) for the message of each connection that is
        # busy sending: their ACKs leave together, their next messages arrive within
        # a moment of each other, and are better applied in one transaction than two.
        self._group: Batcher[Received, Outcome] = Batcher(
            self._apply_group, GROUP_LIMIT, expect=self._busy, linger_s=LINGER_S
        )
        # What the messages acknowledged together publish, in one go (:meth:`publish`).
        self._publishing: Batcher[Effects, None] = Batcher(self._publish)
        # The time of each connection's last message.
        self._last: dict[int, float] = {}

    async def handle(self, block: bytes, peer: Peer) -> tuple[bytes, Effects | None]:
        """The ACK of one block, and what to publish once it is sent (:meth:`publish`):
        the message is committed by then, so the sender need not wait for the rooms."""
        if peer.connection:
            self._last[peer.connection] = time.monotonic()
        try:
            msg, codec = hl7_in.decode(block)
            head = hl7_in.header(msg, codec)
        except Hl7Error as exc:
            known = _parsed_or_none(block)
            await self._refused(peer, None, exc, {"reason": exc.message})
            return hl7_in.ack(known, exc.ack_code, exc).encode("latin-1", "replace"), None
        effects: Effects | None = None
        try:
            text, effects = await self._handle(msg, head, peer)
        except Exception:
            log.exception("a group of inbound HL7 messages could not be committed")
            text = internal_failure(msg)
        return text.encode(codec, "replace"), effects

    def closed(self, peer: Peer) -> None:
        """The connection of ``peer`` ended: it sends nothing more."""
        self._last.pop(peer.connection, None)

    def _busy(self) -> int:
        """The connections that sent a message within ACTIVE_S."""
        since = time.monotonic() - ACTIVE_S
        return sum(1 for at in self._last.values() if at > since)

    async def publish(self, effects: Effects | None) -> None:
        """After the ACK: the committed exam events to the rooms, the new requests to
        the radiologists and coordinators, the drafts to their authors, all in one
        round trip to the engine and in that order; then the escalation timers of the
        exams concerned are re-planned. Exam events are never lost: a room replays
        from SQL, the worker's rebuild re-plans timers (docs/architecture.md "Events
        leave a transaction in one place").

        The messages of a group are acknowledged together, and their connections
        call this at the same moment: what they publish goes together too, in their
        order (:meth:`_publish`), one round trip for the group's messages and one
        for its new exams' timers, where each message took two."""
        if effects is not None:
            await self._publishing.submit(effects)

    async def _publish(self, batch: Sequence[Effects]) -> list[None]:
        messages: list[tuple[str, dict[str, Any]]] = []
        timed: list[tuple[Exam | str, list[dict[str, Any]]]] = []
        for effects in batch:
            by_exam: dict[str, list[ExamEvent]] = {}
            for exam_id, event in effects.events:
                by_exam.setdefault(exam_id, []).append(event)
            # The exams the message created, loaded before its commit.
            created = {exam.id: exam for exam, _choice in effects.routed}
            for exam_id, events in by_exam.items():
                frames, rendered = event_frames(exam_id, events)
                messages += frames
                timed.append((created.get(exam_id) or exam_id, rendered))
            for exam, choice in effects.routed:
                messages += routing.announcements(self.app, exam, choice)
            for users, body in effects.drafts:
                messages += notifications("order.draft", None, body, users=users)
        if messages:
            await self.app.bus.publish_many(messages)
        await replan_many(self.app, timed)
        return [None] * len(batch)

    async def _refused(
        self, peer: Peer, head: Header | None, exc: Hl7Error, extra: dict[str, Any]
    ) -> None:
        detail = {"addr": peer.addr, "error": exc.error, "where": exc.where, **extra}
        if head is not None:
            detail.update(
                application=head.application,
                facility=head.facility,
                type=head.message_type,
                control_id=head.control_id,
            )
        log.info("hl7 message refused: %s", {k: v for k, v in detail.items() if k != "addr"})
        await audit.record(
            self.app,
            action="hl7.message",
            outcome="denied",
            addr=peer.addr,
            username="hl7",
            at=self.app.now(),
            detail=detail,
        )

    async def _sender(self, head: Header) -> Sender | str:
        """The registered sender, kept for SENDER_TTL_S: a registration or a contract
        change reaches a running listener within that delay."""
        key = (head.application, head.facility)
        now = time.monotonic()
        cached = self._senders.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.app.read() as db:
            found = await recognise(db, head.application, head.facility)
        if len(self._senders) > 1000:
            self._senders.clear()
        self._senders[key] = (now + SENDER_TTL_S, found)
        return found

    async def _handle(
        self, msg: hl7.Message, head: Header, peer: Peer
    ) -> tuple[str, Effects | None]:
        sender = await self._sender(head)
        if isinstance(sender, str) or (
            sender.cert_subject is not None and sender.cert_subject != peer.cert_subject
        ):
            reason = sender if isinstance(sender, str) else "client certificate does not match"
            exc = Hl7Error("AR", hl7_in.UNKNOWN_KEY_IDENTIFIER, reason, "MSH", 4)
            await self._refused(peer, head, exc, {"reason": reason})
            return hl7_in.ack(msg, "AR", exc), None
        return await self._group.submit(Received(msg, head, peer, sender))

    async def _apply_group(self, items: Sequence[Received]) -> list[Outcome]:
        return await apply_group(self.app, items)


def _parsed_or_none(block: bytes) -> hl7.Message | None:
    """The message when at least its MSH could be read, to answer it properly."""
    try:
        msg = hl7.parse(block.replace(b"\n", b"\r").strip().decode("latin-1"))
        msg.segment("MSH")
        return msg
    except Exception:
        return None
