"""A server offer planned for a participant whose peer is being closed (a hang-up or a
disconnect racing a renegotiation, seen under load in bench/calls.py as "call task
failed": aiortc marks the peer closed before its signalling state says so)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc import RTCPeerConnection
from aiortc.exceptions import InvalidStateError

from server.calls.manager import CallManager, Participant
from server.core.config import Settings


async def closed_but_stable() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """A server peer closed while the client's answer was being applied: aiortc's
    setRemoteDescription ends after the close and sets the state back to "stable", so
    the state says an offer can be made on a closed peer (the race under load)."""
    pc, client = RTCPeerConnection(), RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await client.setRemoteDescription(pc.localDescription)
    await client.setLocalDescription(await client.createAnswer())
    answering = asyncio.create_task(pc.setRemoteDescription(client.localDescription))
    await asyncio.sleep(0)
    await pc.close()
    await answering
    assert pc.signalingState == "stable"
    await client.close()
    return pc, client


async def test_an_offer_for_a_participant_who_left_ends_quietly(
    make_settings: Callable[..., Settings],
) -> None:
    manager = CallManager(make_settings(call_host_addresses=("127.0.0.1",)))
    pc, _ = await closed_but_stable()
    # conn is never reached: nothing is offered to a participant who left.
    p = Participant(conn=None, pc=pc, dirty=True, closing=True)  # type: ignore[arg-type]
    offered = pc.localDescription.sdp
    await manager._negotiate(p)  # no InvalidStateError
    assert pc.localDescription.sdp == offered


async def test_a_peer_closed_by_something_else_is_still_a_failure(
    make_settings: Callable[..., Settings],
) -> None:
    manager = CallManager(make_settings(call_host_addresses=("127.0.0.1",)))
    pc, _ = await closed_but_stable()
    p = Participant(conn=None, pc=pc, dirty=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidStateError):
        await manager._negotiate(p)
