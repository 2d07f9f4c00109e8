"""A small exam-room client over a real WebSocket.

Tests, benchmarks and scripts share it::

    async with RoomClient(server.ws_url, exam_id, token) as room:
        ack = await room.chat("Patient installé")
        event = await room.next_event()
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin


class RoomClient:
    def __init__(
        self,
        base_ws_url: str,
        exam_id: str,
        token: str,
        since: int = 0,
        origin: str | None = None,
        **connect_options: Any,
    ) -> None:
        self.connect_options = connect_options
        self.url = f"{base_ws_url}/ws/exams/{exam_id}?since={since}"
        self.token = token
        self.origin = origin
        self.ws: ClientConnection | None = None
        self.welcome: dict[str, Any] = {}
        self.last_seq = since
        self.frames: list[dict[str, Any]] = []  # received, not yet taken

    async def __aenter__(self) -> RoomClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        self.ws = await connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            origin=Origin(self.origin) if self.origin is not None else None,
            **{
                "max_size": 4 * 1024 * 1024,
                # Unbounded: a client that stops reading would otherwise pause the
                # socket and never see the server's close frame.
                "max_queue": None,
                **self.connect_options,
            },
        )
        self.welcome = await self.next_of("welcome")
        return self.welcome

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame, in arrival order."""
        if self.frames:
            return self.frames.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if frame.get("type") == "event":
            self.last_seq = max(self.last_seq, frame["event"]["seq"])
        return frame

    async def next_of(self, frame_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of a type; frames of other types stay for `recv`."""
        for i, frame in enumerate(self.frames):
            if frame.get("type") == frame_type:
                return self.frames.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self._read(max(0.0, deadline - loop.time()))
            if frame.get("type") == frame_type:
                return frame
            self.frames.append(frame)

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        event: dict[str, Any] = (await self.next_of("event", timeout))["event"]
        return event

    async def chat(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a chat message and wait for its ack (``{"type": "ack", "id", "seq"}``)."""
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "chat", "id": client_id, "text": text})
        while True:
            ack = await self.next_of("ack")
            if ack["id"] == client_id:
                return ack
