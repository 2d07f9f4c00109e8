"""One exam's call served from any web process (docs/calls.md "Several web processes").

The media of a call lives on one process: the first to receive a ``call.offer`` for an
exam without a call takes the engine lease ``call:{exam id}`` and renews it every
third of ``CALL_LEASE_S`` while the call lasts. A member whose room socket reached
another process stays on it; that process relays the member's call frames through
the engine to the holder (channel ``callnode:{node}``), and the holder sends what it
has for the member back (channel ``callmember:{conn id}``), which the member's own
process pushes on the socket. Only signalling travels this way: the member's
browser connects its media (ICE, DTLS-SRTP) to the holder's aiortc peer directly.

If the holder dies, its lease expires: the processes of its remote members see that
(they check every third of ``CALL_LEASE_S``), tell each member with a ``call_lost``
error and an empty ``call.state``, and forget the call; the next ``call.offer`` starts
a new one on whichever process takes the lease. With the memory engine (one process)
the lease is always this process's: every call is local, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rooms.engine.base import Message, Subscription
from rooms.frames import CallHangupFrame, CallOfferFrame, ClientFrame, parse_client_frame
from rooms.types import ErrorCode, error_frame
from server.core.channels import call_member_channel, call_node_channel, room_channel
from server.core.identity import EstablishmentRef, Person, Principal

if TYPE_CHECKING:
    from server.calls.manager import CallManager, Connection
    from server.core.context import AppContext

log = logging.getLogger("teleimagerie.calls")

LOST_MESSAGE = "the process holding the call stopped: call again"


def call_key(exam_id: str) -> str:
    return f"call:{exam_id}"


def principal_json(principal: Principal) -> dict[str, Any]:
    user = principal.user
    est = user.establishment
    return {
        "session_id": principal.session_id,
        "user": {
            "id": user.id,
            "username": user.username,
            "role": user.role,
            "display_name": user.display_name,
            "professional_id": user.professional_id,
            "establishment_id": user.establishment_id,
            "establishment": [est.code, est.name] if est else None,
        },
    }


def principal_of(data: dict[str, Any]) -> Principal:
    user = dict(data["user"])
    est = user.pop("establishment")
    person = Person(**user, establishment=EstablishmentRef(*est) if est else None)
    return Principal(person, data["session_id"])


def frame_json(frame: ClientFrame) -> dict[str, Any]:
    return {"type": frame.type.value, **asdict(frame)}


class MemberProxy:
    """At the holder: a call member whose socket is on another process. It is a
    ``Connection`` for the CallManager; what it pushes goes back through the engine,
    in order (one publishing task per member)."""

    def __init__(self, app: AppContext, principal: Principal, exam_id: str, conn_id: str) -> None:
        self.app = app
        self.principal = principal
        self.exam_id = exam_id
        self.conn_id = conn_id
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()  # frames from the member
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # to the member
        self.tasks: list[asyncio.Task[None]] = []

    def push(self, frame: dict[str, Any]) -> None:
        self.outbox.put_nowait(frame)

    async def send_back(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                return  # forgotten, after everything it had to send
            try:
                await self.app.bus.publish(call_member_channel(self.conn_id), frame)
            except Exception:
                log.exception("could not send a call frame to member %s", self.conn_id)


@dataclass(eq=False)
class RemoteMember:
    """On a member's own process: the call it is in is held by ``holder``."""

    conn: Connection
    holder: str
    subscription: Subscription | None = None


@dataclass(eq=False)
class CallCluster:
    """The routing of call frames between this process and the others."""

    manager: CallManager
    app: AppContext
    lease_s: float
    node: str = field(default_factory=lambda: uuid.uuid4().hex)
    remote: dict[str, RemoteMember] = field(default_factory=dict)  # by conn_id
    proxies: dict[str, MemberProxy] = field(default_factory=dict)  # by conn_id
    held: set[str] = field(default_factory=set)  # exam ids whose lease this process took
    _subscription: Subscription | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self.app.bus.subscribe(
            call_node_channel(self.node), self._on_node_message
        )
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            await self._subscription.close()
        for conn_id in list(self.remote):
            await self._drop_remote(conn_id, tell_holder=True)
        for proxy in list(self.proxies.values()):
            await self.manager.leave(proxy)
        for exam_id in list(self.held):
            with contextlib.suppress(Exception):
                await self.app.bus.lease_release(call_key(exam_id), self.node)

    # -- on the member's process ------------------------------------------

    async def route(self, conn: Connection, frame: ClientFrame) -> bool:
        """True if the frame went to the process holding the call; False if this
        process handles it (it holds the call, or will)."""
        member = self.remote.get(conn.conn_id)
        if member is None:
            if conn.exam_id in self.manager.calls:
                return False
            if not isinstance(frame, CallOfferFrame):
                return False  # not in any call: the manager says not_in_call
            holder = await self.app.bus.lease(call_key(conn.exam_id), self.node, self.lease_s)
            if holder == self.node:
                self.held.add(conn.exam_id)
                return False
            if isinstance(conn, MemberProxy):
                # The lease moved between the member's process and here: start again.
                conn.push(dict(error_frame(ErrorCode.CALL_LOST, LOST_MESSAGE)))
                return True
            member = RemoteMember(conn, holder)
            self.remote[conn.conn_id] = member
            member.subscription = await self.app.bus.subscribe(
                call_member_channel(conn.conn_id), lambda message: self._on_reply(member, message)
            )
        await self._send(member, {"op": "frame", "frame": frame_json(frame)})
        if isinstance(frame, CallHangupFrame):
            await self._drop_remote(conn.conn_id, tell_holder=False)
        return True

    async def leave(self, conn: Connection) -> bool:
        """The member's socket closed: tell the holder. True if the call was remote."""
        if conn.conn_id not in self.remote:
            return False
        await self._drop_remote(conn.conn_id, tell_holder=True)
        return True

    async def _send(self, member: RemoteMember, message: Message) -> None:
        conn = member.conn
        message = {
            **message,
            "conn": conn.conn_id,
            "exam": conn.exam_id,
            "principal": principal_json(conn.principal),
        }
        await self.app.bus.publish(call_node_channel(member.holder), message)

    def _on_reply(self, member: RemoteMember, message: Message) -> None:
        member.conn.push(dict(message))
        if message.get("type") == "error" and message.get("code") == ErrorCode.CALL_LOST:
            asyncio.get_running_loop().create_task(
                self._drop_remote(member.conn.conn_id, tell_holder=False)
            )

    async def _drop_remote(self, conn_id: str, *, tell_holder: bool) -> None:
        member = self.remote.pop(conn_id, None)
        if member is None:
            return
        if tell_holder:
            with contextlib.suppress(Exception):
                await self._send(member, {"op": "leave"})
        if member.subscription is not None:
            await member.subscription.close()

    async def _lost(self, member: RemoteMember) -> None:
        """The holder's lease expired: its process died or lost Redis."""
        conn = member.conn
        log.warning("call of exam %s lost with its process %s", conn.exam_id, member.holder)
        # Told anyway: a holder that only stalled past its lease drops the member too.
        await self._drop_remote(conn.conn_id, tell_holder=True)
        conn.push(dict(error_frame(ErrorCode.CALL_LOST, LOST_MESSAGE)))
        empty = {"type": "call.state", "participants": [], "recording": False}
        if await self.app.bus.lease_owner(call_key(conn.exam_id)) is None:
            await self.app.bus.publish(room_channel(conn.exam_id), empty)
        else:
            conn.push(empty)

    # -- on the holder ----------------------------------------------------

    def _on_node_message(self, message: Message) -> None:
        conn_id = message.get("conn")
        if not isinstance(conn_id, str):
            return
        proxy = self.proxies.get(conn_id)
        if proxy is None:
            if message.get("op") != "frame":
                return  # a leave for a member this process no longer has
            try:
                principal = principal_of(message["principal"])
            except (KeyError, TypeError, ValueError):
                log.warning("malformed call relay message for %s", conn_id)
                return
            proxy = MemberProxy(self.app, principal, str(message["exam"]), conn_id)
            self.proxies[conn_id] = proxy
            loop = asyncio.get_running_loop()
            proxy.tasks = [
                loop.create_task(self._serve(proxy)),
                loop.create_task(proxy.send_back()),
            ]
        proxy.inbox.put_nowait(message)

    async def _serve(self, proxy: MemberProxy) -> None:
        """The frames of one remote member, in the order they were sent."""
        while proxy.conn_id in self.proxies:
            message = await proxy.inbox.get()
            try:
                if message.get("op") == "stop":
                    return
                if message.get("op") == "leave":
                    await self.manager.leave(proxy)
                    continue
                raw = json.dumps(message["frame"])
                frame = parse_client_frame(raw, self.app.settings.max_ws_frame_bytes)
                await self.manager.handle(proxy, frame)
            except Exception:
                log.exception("relayed call frame of %s failed", proxy.conn_id)

    def forget(self, conn: Connection) -> None:
        """A remote member left the call here: its tasks end once the frames it was
        sent are on their way."""
        proxy = self.proxies.pop(conn.conn_id, None)
        if proxy is not None:
            proxy.inbox.put_nowait({"op": "stop"})
            proxy.outbox.put_nowait(None)

    # -- leases -------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew the leases of this process's calls, release those that ended, and
        watch the holders of the calls this process's members are in."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._renew()
                await self._watch()
            except Exception:
                log.exception("call lease upkeep failed")

    async def _renew(self) -> None:
        bus = self.app.bus
        for exam_id in list(self.held):
            if exam_id in self.manager.calls:
                holder = await bus.lease(call_key(exam_id), self.node, self.lease_s)
                if holder != self.node:
                    log.error("the lease of the call of exam %s went to %s", exam_id, holder)
            else:
                self.held.discard(exam_id)
                await bus.lease_release(call_key(exam_id), self.node)

    async def _watch(self) -> None:
        for member in list(self.remote.values()):
            owner = await self.app.bus.lease_owner(call_key(member.conn.exam_id))
            if owner != member.holder and member.conn.conn_id in self.remote:
                await self._lost(member)
