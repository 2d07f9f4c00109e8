"""Short-lived TURN credentials per call (docs/calls.md "TURN").

The TURN REST API scheme that coturn implements (``use-auth-secret``): the server
and the TURN server share a secret; a credential is ``username = "<expiry>:<user>"``
(expiry in Unix seconds) and ``password = base64(HMAC-SHA1(secret, username))``.
The TURN server recomputes the password and refuses an expired username, so nothing
is stored and a credential leaked from a browser is useless after ``TURN_TTL_S``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from server.core.config import Settings


def turn_credential(secret: str, user: str, expires_at: int) -> tuple[str, str]:
    """(username, password) valid until ``expires_at`` (Unix seconds)."""
    if ":" in user:
        raise ValueError("the user part of a TURN username may not contain ':'")
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(settings: Settings, user_id: int, now: float) -> list[dict[str, Any]]:
    """The ICE servers a participant gets for one call: the static ``ICE_SERVERS``,
    plus the TURN server with a credential of its own when ``TURN_URLS`` is set."""
    servers = [dict(s) for s in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret:
        username, password = turn_credential(
            settings.turn_secret, str(user_id), int(now) + settings.turn_ttl_s
        )
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": password}
        )
    return servers
