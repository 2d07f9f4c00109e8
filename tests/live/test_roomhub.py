"""The collector policy of a process holding many sockets (server/live/roomhub.py)."""

from __future__ import annotations

import gc

from server.live.roomhub import CollectorPolicy


def test_freezes_as_sockets_accumulate_and_thaws_on_schedule() -> None:
    policy = CollectorPolicy(thaw_s=60)
    try:
        policy.start()  # what the process loaded before serving
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        assert not policy.joined(50)  # a handful of sockets: nothing to gain
        assert policy.joined(100)
        assert gc.get_freeze_count() > 0
        assert not policy.joined(120)  # less than a quarter more
        assert policy.joined(126)
        assert not policy.tick(0.0)
        assert not policy.tick(59.0)
        assert policy.tick(60.0)
        assert gc.get_freeze_count() == 0  # the next full pass sees everything again
        assert policy.joined(100)  # and sockets are frozen again as they come
    finally:
        gc.unfreeze()
