"""TURN (docs/calls.md "TURN"): per-call credentials, checked by a real coturn.

coturn (Debian's package, started by scripts/services.sh's check and here as a
subprocess on a free port) runs with ``use-auth-secret``: it accepts the server's
credentials only if it computes the same HMAC and the expiry is in the future. A
participant with the relay-only policy (``iceTransportPolicy: "relay"``) has no
candidate but coturn's, so its media can only flow through the TURN server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from aiortc.sdp import SessionDescription

from server.calls.client import CallClient
from server.calls.turn import turn_credential
from server.core.config import Settings
from server.testing import LiveServer, free_port
from tests.helpers import login

pytestmark = pytest.mark.slow

SECRET = "turn-test-secret"


def stun_answers(port: int) -> bool:
    """One RFC 5389 binding request; True when the server answers within 0.1 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12), ("127.0.0.1", port))
        try:
            return len(sock.recv(512)) >= 20
        except TimeoutError:
            return False


@pytest.fixture(scope="module")
def coturn() -> Iterator[int]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is missing: run scripts/services.sh (apt-get install coturn)")
    port = free_port()
    lo = 40000 + port % 20000
    proc = subprocess.Popen(
        [
            binary,
            "-n",  # no configuration file: everything below
            "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={lo}",
            f"--max-port={lo + 200}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=teleimagerie.test",
            "--allow-loopback-peers",  # the server's peers are on 127.0.0.1 here
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not any(stun_answers(port) for _ in range(100)):  # 10 s at most
        proc.terminate()
        pytest.fail("coturn did not answer a STUN binding request")
    yield port
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], coturn: int) -> Settings:
    return make_settings(
        call_host_addresses=("127.0.0.1",),
        turn_urls=(f"turn:127.0.0.1:{coturn}?transport=udp",),
        turn_secret=SECRET,
        turn_ttl_s=600,
    )


def test_credential_scheme() -> None:
    username, password = turn_credential("s3cret", "42", 1_800_000_000)
    assert username == "1800000000:42"
    assert password != turn_credential("other", "42", 1_800_000_000)[1]
    assert password != turn_credential("s3cret", "42", 1_800_000_001)[1]
    with pytest.raises(ValueError):
        turn_credential("s3cret", "4:2", 1_800_000_000)


@pytest.fixture
async def clients(live_server: LiveServer, exam_id: str) -> AsyncIterator[list[CallClient]]:
    made: list[CallClient] = []
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        for username in ("urg_a", "man_a"):
            token = await login(http, username)
            config = await http.get(
                "/api/calls/config", headers={"Authorization": f"Bearer {token}"}
            )
            assert config.status_code == 200, config.text
            made.append(
                CallClient(
                    live_server.ws_url,
                    exam_id,
                    token,
                    ice_servers=config.json()["ice_servers"],
                    relay_only=username == "urg_a",
                )
            )
    yield made
    for client in made:
        await client.close()


async def test_each_call_gets_its_own_expiring_credential(
    client_for: Callable[[str], Awaitable[httpx.AsyncClient]], coturn: int
) -> None:
    urg = await client_for("urg_a")
    resp = await urg.get("/api/calls/config")
    assert resp.status_code == 200, resp.text
    (turn,) = resp.json()["ice_servers"]
    assert turn["urls"] == [f"turn:127.0.0.1:{coturn}?transport=udp"]
    expiry, user = turn["username"].split(":")
    assert int(expiry) > 0 and user.isdigit()
    assert turn["credential"] == turn_credential(SECRET, user, int(expiry))[1]


async def test_a_relay_only_participant_connects_through_coturn(
    clients: list[CallClient],
) -> None:
    urg, man = clients
    for client in clients:
        await client.connect()
        await client.join()
    await urg.wait_for(lambda c: len((c.state or {}).get("participants", [])) == 2)
    assert urg.pc is not None
    types = {
        c.type
        for m in SessionDescription.parse(urg.pc.localDescription.sdp).media
        for c in m.ice_candidates
    }
    assert types == {"relay"}  # coturn accepted the credential: its candidate only
    await urg.wait_for(lambda c: sum(c.received.values()) >= 25)
    await man.wait_for(lambda c: sum(c.received.values()) >= 25)
