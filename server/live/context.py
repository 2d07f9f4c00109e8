"""The context of the web process: the core services and the archive, the exam
rooms this process holds (server/live/roomhub.py), their chat log and the
calls (server/calls/manager.py). Only ``teleimagerie serve`` builds one."""

from __future__ import annotations

from dataclasses import dataclass

from server.accounts.auth import SessionReader
from server.archive.context import ArchiveContext
from server.calls.manager import CallManager
from server.live.chatlog import ChatLog
from server.live.joins import JoinReader
from server.live.roomhub import RoomHub


@dataclass
class LiveContext(ArchiveContext):
    rooms: RoomHub
    # Chat messages, written in groups (server/core/batching.py).
    chat: ChatLog
    calls: CallManager
    # What room joins read, for the joins of a burst at once.
    joins: JoinReader
    # The sessions of the sockets that open together, checked together.
    sessions: SessionReader
