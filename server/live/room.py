"""The exam room: what one member's socket does once the web layer has opened
it (``WS /ws/exams/{id}?since=N``, docs/api.md "Exam room", docs/rooms.md).

One connection = one reader (:func:`enter`'s coroutine) and an outbox of
bounded size (``server.live.outbox.Outbox``) over the socket's ``Transport``.
The connection subscribes to the room's channel *before* it replays missed
events from SQL, and drops anything at or below the highest seq it has passed
on, so a client sees every event once and in order. A live event
that skips a seq makes the connection fetch the gap from SQL (a message lost
between processes costs a query, never an event). A client that cannot keep up
is closed with ``CLOSE_SLOW_CONSUMER``; it resumes with ``since``.

The connection holds its session (server/core/access.py): it is closed with
``CloseCode.SESSION_ENDED`` when the session ends, and a frame that arrives after
is dropped. A radiologist who was in the room of a request another radiologist
accepts is told who took it and closed with ``CloseCode.FORBIDDEN``. A client
whose ``since`` is beyond the exam's last seq (the database was restored from a
backup) gets ``reset: true`` in the welcome and the whole log from seq 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rooms.frames import ChatFrame, FrameError, PingFrame, TypingFrame, parse_client_frame
from rooms.limits import TokenBucket
from rooms.permissions import is_participant_role, may_send, visible
from rooms.types import CloseCode, ErrorCode, EventKind, Role, error_frame
from server.core import audit
from server.core.access import Hold
from server.core.channels import room_channel
from server.core.context import AppContext
from server.core.identity import Principal, user_json
from server.live.chatlog import Chat
from server.live.context import LiveContext
from server.live.joins import Joined, events_after
from server.live.outbox import Outbox, Transport, client_frame
from server.live.roomhub import public_presence

log = logging.getLogger("teleimagerie.room")

CLOSE_NOT_PARTICIPANT = CloseCode.FORBIDDEN
CLOSE_NO_SUCH_EXAM = CloseCode.NO_SUCH_EXAM

RATE = 10.0  # frames a second per connection, sustained
BURST = 30.0


class SlowConsumer(Exception):
    pass


class Connection:
    """One member's socket in one room.

    Thousands of these sit idle for hours, so they hold little: plain values for
    the caller (no ORM rows) and an outbox that allocates only while frames wait.
    """

    __slots__ = (
        "app",
        "principal",
        "role",
        "exam_id",
        "conn_id",
        "since",
        "outbox",
        "sent_seq",
        "held",
        "bucket",
        "gap_lock",
        "hold",
        "joined_seq",
        "__weakref__",
    )

    def __init__(
        self, transport: Transport, app: LiveContext, principal: Principal, exam_id: str
    ) -> None:
        self.app = app
        self.principal = principal.detached()
        self.role = Role(principal.role)
        self.exam_id = exam_id
        self.conn_id = uuid.uuid4().hex
        self.since = app.now().isoformat().replace("+00:00", "Z")
        self.outbox = Outbox(transport, "slow consumer: reconnect with since")
        self.sent_seq = 0  # highest seq passed on (or skipped as invisible)
        self.held: list[dict[str, Any]] | None = []
        self.bucket = TokenBucket(RATE, BURST)
        self.gap_lock: asyncio.Lock | None = None
        self.hold: Hold | None = None  # set once registered with app.access
        self.joined_seq = 0  # the exam's last seq at the join: later events are live

    def end(self, code: int, reason: str, last: dict[str, Any] | None = None) -> None:
        """Close this socket now (its session ended, or its user lost the exam)."""
        if self.hold is not None:
            self.hold.ended = True
        self.outbox.finish(code, reason, last)

    @property
    def member(self) -> dict[str, Any]:
        """This connection's presence entry."""
        user = self.principal.user
        return {
            "user": {"id": user.id, "display_name": user.display_name},
            "role": self.principal.role,
            "since": self.since,
        }

    # -- outbound ---------------------------------------------------------

    def push(self, frame: dict[str, Any] | str) -> None:
        self.outbox.push(frame)

    def on_message(self, message: dict[str, Any]) -> None:
        """Engine callback (must not block): filter and queue one room message."""
        if self.held is not None:  # the welcome is not sent yet: it goes first
            self.held.append(message)
            return
        if message.get("type") != "event":
            self.push(message)
            return
        seq = message["event"]["seq"]
        if seq <= self.sent_seq:
            return
        if seq > self.sent_seq + 1:
            # Something was lost or is still in flight: fetch it from SQL.
            asyncio.get_running_loop().create_task(self.fill_gap())
            return
        self.pass_on(message["event"], message)

    def welcome(self, frame: dict[str, Any], replay: Sequence[dict[str, Any]] = ()) -> None:
        """Send the welcome, the events the caller missed (``replay``: read from
        SQL at the join), then what arrived live while it was being prepared."""
        self.push(frame)
        for event in replay:
            if event["seq"] > self.sent_seq:
                self.pass_on(event)
        held, self.held = self.held or [], None
        for message in held:
            self.on_message(message)

    def pass_on(self, event: dict[str, Any], message: dict[str, Any] | None = None) -> None:
        """Send the next event if the role may see it; ``message``: the engine
        message it came in, whose text is encoded once for all local members."""
        self.sent_seq = event["seq"]
        if event["seq"] > self.joined_seq and self.lost_to(event):
            return
        if visible(EventKind(event["kind"]), self.role):
            self.push(encoded(message) if message else {"type": "event", "event": event})

    def lost_to(self, event: dict[str, Any]) -> bool:
        """A radiologist watching a request that another radiologist has just
        accepted is told who took it, and closed: the exam is no longer theirs."""
        if self.role is not Role.RADIOLOGIST or event["kind"] != EventKind.EXAM_ACCEPTED:
            return False
        taker = event.get("body", {}).get("radiologist") or {}
        if taker.get("id") == self.principal.user.id:
            return False
        name = str(taker.get("display_name") or "another radiologist")
        self.end(
            CloseCode.FORBIDDEN,
            f"taken by {name}",
            {"type": "access.lost", "reason": "taken", "by": taker or None},
        )
        return True

    async def fill_gap(self) -> None:
        if self.gap_lock is None:
            self.gap_lock = asyncio.Lock()
        async with self.gap_lock:
            for event in await load_events(self.app, self.exam_id, self.sent_seq):
                if event["seq"] > self.sent_seq:
                    self.pass_on(event)


# The members of a room on this process receive the same message object from the
# engine: encode it once for all of them. Keyed by id() with the object kept
# alongside, so an id cannot be reused while its entry lives.
_ENCODED: dict[int, tuple[dict[str, Any], str]] = {}
_ENCODED_MAX = 256


def encoded(message: dict[str, Any]) -> str:
    """The event frame of an engine message, as text."""
    hit = _ENCODED.get(id(message))
    if hit is not None and hit[0] is message:
        return hit[1]
    text = json.dumps({"type": "event", "event": message["event"]}, separators=(",", ":"))
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.pop(next(iter(_ENCODED)))
    _ENCODED[id(message)] = (message, text)
    return text


async def load_events(app: AppContext, exam_id: str, since: int) -> list[dict[str, Any]]:
    async with app.read() as db:
        return await events_after(db, exam_id, since)


async def presence(app: AppContext, exam_id: str) -> list[dict[str, Any]]:
    return public_presence(await app.bus.presence_list(room_channel(exam_id)))


async def broadcast_presence(app: AppContext, exam_id: str) -> None:
    await app.bus.publish(
        room_channel(exam_id), {"type": "presence", "presence": await presence(app, exam_id)}
    )


async def store_chat(conn: Connection, frame: ChatFrame) -> None:
    """Persist a chat message once per client id, ack it, publish it."""
    app = conn.app

    def ack(seq: int) -> None:
        conn.push({"type": "ack", "id": frame.id, "seq": seq})

    chat = Chat(conn.exam_id, frame.id, frame.text, conn.principal.user, app.now(), ack)
    try:
        await app.chat.append(chat)
    except Exception:
        log.exception("could not store a chat message")
        conn.push(dict(error_frame(ErrorCode.NOT_STORED, "not stored: send it again", frame.id)))


async def handle_frame(conn: Connection, raw: str | bytes) -> None:
    # A frame that arrives after the session ended (the close is on its way) is
    # dropped: never stored, acknowledged, nor relayed.
    if conn.hold is None or not await conn.app.access.confirm(conn.hold):
        return
    try:
        frame = parse_client_frame(raw, conn.app.settings.max_ws_frame_bytes)
    except FrameError as exc:
        conn.push(dict(error_frame(exc.code, exc.message, exc.id)))
        return
    frame_id = getattr(frame, "id", None)
    if not conn.bucket.allow(time.monotonic()):
        conn.push(dict(error_frame(ErrorCode.RATE_LIMITED, "slow down: too many frames", frame_id)))
        return
    if not may_send(conn.role, frame.type):
        conn.push(
            dict(error_frame(ErrorCode.FORBIDDEN_KIND, "your role may not send this", frame_id))
        )
        return
    if isinstance(frame, PingFrame):
        conn.push({"type": "pong"})
    elif isinstance(frame, TypingFrame):
        await conn.app.bus.publish(
            room_channel(conn.exam_id),
            {
                "type": "typing",
                "user": {
                    "id": conn.principal.user.id,
                    "display_name": conn.principal.user.display_name,
                },
            },
        )
    elif isinstance(frame, ChatFrame):
        await store_chat(conn, frame)
    else:
        await conn.app.calls.handle(conn, frame)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a caller may not enter a room: the close code and reason their socket
    gets (docs/api.md "Exam room"), and the code the audit trail records."""

    close_code: int
    reason: str
    audit_code: str


NOT_PARTICIPANT = Refusal(CLOSE_NOT_PARTICIPANT, "not a participant", "not_participant")
NO_SUCH_EXAM = Refusal(CLOSE_NO_SUCH_EXAM, "no such exam", "not_found")


async def join(
    app: LiveContext, principal: Principal, exam_id: str, since: int, addr: str
) -> Joined | Refusal:
    """Check the caller may enter this exam's room, read what their welcome
    needs, and record that they entered (the audit row is committed before the
    welcome is sent). Kept apart from :func:`enter` so that no session or ORM
    row outlives the join.

    Called once the connection listens on the room's channel: an event that is
    not in SQL yet when the exam is read has a seq beyond the ``last_seq`` read
    here, and is published after its commit, so it arrives live. The replay is
    therefore bounded by that ``last_seq``, and read in the same session as the
    exam: a caller already up to date (a reconnect storm after a restart) costs
    one query, not two. The joins of a burst are read together
    (server/live/joins.py)."""
    joined = await app.joins.read(principal, exam_id, since)
    if joined is None:
        return NO_SUCH_EXAM
    await audit.record(
        app,
        action="room.join",
        who=principal,
        exam_id=joined.exam_id,
        addr=addr,
        at=app.now(),
        detail={"since": since},
    )
    return joined


async def enter(
    app: LiveContext,
    transport: Transport,
    principal: Principal,
    exam_id: str,
    since: int,
    addr: str,
) -> Refusal | None:
    """Serve one authenticated caller in an exam's room until they leave:
    join, welcome, replay from ``since``, then their frames. A refused caller
    gets the :class:`Refusal` back before anything is sent (the web layer audits
    it with the request and closes the socket); else None once they have left.
    ``addr``: the caller's address, for the audit trail."""
    if not is_participant_role(Role(principal.role)):
        return NOT_PARTICIPANT
    conn = Connection(transport, app, principal, exam_id)
    channel = room_channel(exam_id)
    # Listen first: what is published from now on is held until the welcome. A
    # refused caller's subscription is closed before anything is sent to them, and
    # what it held is dropped with the connection.
    subscription = await app.bus.subscribe(channel, conn.on_message)
    try:
        joined = await join(app, principal, exam_id, since, addr)
    except BaseException:
        await subscription.close()
        raise
    if isinstance(joined, Refusal):
        await subscription.close()
        return joined
    try:
        conn.hold = await app.access.hold(principal, conn.end)
    except BaseException:
        await subscription.close()
        raise
    del principal
    conn.sent_seq = 0 if joined.reset else since
    conn.joined_seq = joined.last_seq
    hub = app.rooms
    try:
        await app.bus.presence_join(channel, conn.conn_id, conn.member, app.settings.presence_ttl_s)
        hub.add(conn)
        conn.welcome(
            {
                "type": "welcome",
                "exam": joined.exam,
                "you": user_json(conn.principal.user),
                "presence": await presence(app, exam_id),
                "last_seq": joined.last_seq,
                # Who is in the consult now: a member joining mid-call sees it at once.
                "call": app.calls.state(exam_id),
                **({"reset": True} if joined.reset else {}),
            },
            joined.replay,
        )
        del joined
        await broadcast_presence(app, exam_id)
        while True:
            raw = client_frame(await transport.receive())
            if raw is None:
                break
            await handle_frame(conn, raw)
    finally:
        with contextlib.suppress(Exception):
            await app.calls.leave(conn)  # frees the peer connection, tells the others
        hub.remove(conn)
        app.access.release(conn.hold)
        await subscription.close()
        conn.outbox.stop()
        with contextlib.suppress(Exception):
            await app.bus.presence_leave(channel, conn.conn_id)
            await broadcast_presence(app, exam_id)
    return None
