"""The engine contract (docs/rooms.md "Engines"), run against memory and Redis alike.

`engines` gives two engines: for Redis two instances sharing one Redis, i.e. two
processes; for memory the same instance twice.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from rooms.engine import Engine, Message

Pair = tuple[Engine, Engine]


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (2 s at most) for an asynchronous delivery; fail the test if it does not happen."""
    deadline = time.monotonic() + 2.0
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for a delivery")
        await asyncio.sleep(0.002)


# Fan-out


async def test_publish_reaches_every_subscriber_in_every_process(engines: Pair) -> None:
    a, b = engines
    got: dict[str, list[Message]] = {"a1": [], "a2": [], "b": []}
    await a.subscribe("exam:1", got["a1"].append)
    await a.subscribe("exam:1", got["a2"].append)
    await b.subscribe("exam:1", got["b"].append)
    for n in range(5):
        await a.publish("exam:1", {"n": n, "text": "Hémorragie ?"})
    await until(lambda: all(len(v) == 5 for v in got.values()))
    expected = [{"n": n, "text": "Hémorragie ?"} for n in range(5)]
    assert got == {"a1": expected, "a2": expected, "b": expected}


async def test_publish_many_delivers_in_order_to_each_channel(engines: Pair) -> None:
    a, b = engines
    one: list[Message] = []
    two: list[Message] = []
    await b.subscribe("exam:1", one.append)
    await b.subscribe("exam:2", two.append)
    await a.publish_many([(f"exam:{1 + n % 2}", {"n": n}) for n in range(10)])
    await until(lambda: len(one) == 5 and len(two) == 5)
    assert [m["n"] for m in one] == [0, 2, 4, 6, 8]
    assert [m["n"] for m in two] == [1, 3, 5, 7, 9]


async def test_a_subscription_is_effective_when_subscribe_returns(engines: Pair) -> None:
    a, b = engines
    got: list[Message] = []
    for n in range(20):
        await a.subscribe(f"exam:{n}", got.append)
        await b.publish(f"exam:{n}", {"n": n})
    await until(lambda: len(got) == 20)
    assert sorted(m["n"] for m in got) == list(range(20))


async def test_channels_are_separate(engines: Pair) -> None:
    a, b = engines
    one: list[Message] = []
    two: list[Message] = []
    await a.subscribe("exam:1", one.append)
    await a.subscribe("exam:2", two.append)
    await b.publish("exam:2", {"to": 2})
    await until(lambda: len(two) == 1)
    assert one == []


async def test_closed_subscriptions_receive_nothing(engines: Pair) -> None:
    a, b = engines
    closed: list[Message] = []
    kept: list[Message] = []
    last_closed: list[Message] = []
    barrier: list[Message] = []
    first = await a.subscribe("exam:1", closed.append)
    assert first.channel == "exam:1"
    await a.subscribe("exam:1", kept.append)
    only = await a.subscribe("exam:2", last_closed.append)
    await a.subscribe("barrier", barrier.append)
    await first.close()
    await first.close()  # idempotent
    await only.close()  # the last local subscriber of exam:2
    await b.publish("exam:1", {"n": 1})
    await b.publish("exam:2", {"n": 2})
    await b.publish("barrier", {})  # delivered after the two above
    await until(lambda: len(barrier) == 1)
    assert (closed, kept, last_closed) == ([], [{"n": 1}], [])


async def test_resubscribing_after_the_last_close_works(engines: Pair) -> None:
    a, b = engines
    got: list[Message] = []
    for _ in range(3):
        subscription = await a.subscribe("exam:1", got.append)
        await subscription.close()
    await a.subscribe("exam:1", got.append)
    await b.publish("exam:1", {"n": 1})
    await until(lambda: len(got) == 1)


async def test_a_failing_callback_does_not_starve_the_others(
    engines: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = engines
    got: list[Message] = []

    def broken(message: Message) -> None:
        raise RuntimeError("bug in one subscriber")

    await a.subscribe("exam:1", broken)
    await a.subscribe("exam:1", got.append)
    with caplog.at_level(logging.ERROR, logger="rooms.engine"):
        await b.publish("exam:1", {"n": 1})
        await until(lambda: len(got) == 1)
    assert "subscriber callback failed" in caplog.text


async def test_messages_are_json_copies(engines: Pair) -> None:
    a, b = engines
    got: list[Message] = []
    await a.subscribe("exam:1", got.append)
    sent: dict[str, Any] = {"tags": ("CT", "head"), "n": 1}
    await b.publish("exam:1", sent)
    sent["n"] = 2
    await until(lambda: len(got) == 1)
    assert got == [{"tags": ["CT", "head"], "n": 1}]
    with pytest.raises(TypeError):
        await b.publish("exam:1", {"not json": object()})


async def test_publish_many_encodes_a_message_once_for_all_its_channels(
    engines: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notification is one object for several channels (a user's, the roles'):
    # encoded once, each channel's subscribers still get a copy of their own.
    a, b = engines
    one: list[Message] = []
    two: list[Message] = []
    await a.subscribe("user:1", one.append)
    await a.subscribe("role:coordinator", two.append)
    sent: dict[str, Any] = {"kind": "exam.assigned", "exam": {"id": "x"}}
    encodings = 0
    dumps = json.dumps

    def counting(obj: Any, *args: Any, **kwargs: Any) -> str:
        nonlocal encodings
        encodings += obj is sent
        return dumps(obj, *args, **kwargs)

    monkeypatch.setattr(json, "dumps", counting)
    await b.publish_many([("user:1", sent), ("role:coordinator", sent), ("role:nobody", sent)])
    await until(lambda: len(one) == len(two) == 1)
    assert encodings == 1
    assert one == two == [sent]
    assert one[0] is not two[0]
    with pytest.raises(TypeError):  # checked even where nobody listens
        await b.publish_many([("role:nobody", {"not json": object()})])


async def test_close_is_idempotent(engines: Pair) -> None:
    a, _ = engines
    await a.subscribe("exam:1", lambda m: None)
    await a.close()
    await a.close()  # and the fixture closes it once more


# Presence


async def test_presence_join_list_leave_across_processes(engines: Pair) -> None:
    a, b = engines
    await a.presence_join("exam:1", "c2", {"user": "dr.b", "role": "radiologist"}, ttl_s=30)
    await b.presence_join("exam:1", "c1", {"user": "ide.a", "role": "manipulator"}, ttl_s=30)
    await b.presence_join("exam:2", "c3", {"user": "dr.c", "role": "urgentist"}, ttl_s=30)
    assert await b.presence_list("exam:1") == [
        {"user": "ide.a", "role": "manipulator", "conn_id": "c1"},
        {"user": "dr.b", "role": "radiologist", "conn_id": "c2"},
    ]
    await b.presence_leave("exam:1", "c2")
    await b.presence_leave("exam:1", "c-unknown")
    assert [m["conn_id"] for m in await a.presence_list("exam:1")] == ["c1"]
    assert [m["conn_id"] for m in await a.presence_list("exam:2")] == ["c3"]
    assert await a.presence_list("exam:3") == []


async def test_one_entry_per_connection_of_the_same_user(engines: Pair) -> None:
    a, b = engines
    await a.presence_join("exam:1", "tab1", {"user": "dr.b"}, ttl_s=30)
    await b.presence_join("exam:1", "tab2", {"user": "dr.b"}, ttl_s=30)
    await a.presence_join("exam:1", "tab1", {"user": "dr.b", "away": True}, ttl_s=30)
    assert await a.presence_list("exam:1") == [
        {"user": "dr.b", "away": True, "conn_id": "tab1"},
        {"user": "dr.b", "conn_id": "tab2"},
    ]


async def test_presence_expires_without_heartbeat(engines: Pair) -> None:
    a, b = engines
    t = time.time()
    await a.presence_join("exam:1", "c1", {"user": "u1"}, ttl_s=10, now=t)
    await a.presence_join("exam:1", "c2", {"user": "u2"}, ttl_s=10, now=t)
    # c1's process keeps heartbeating, c2's was killed.
    assert await a.presence_heartbeat("exam:1", "c1", ttl_s=10, now=t + 8)
    assert [m["conn_id"] for m in await b.presence_list("exam:1", now=t + 9.99)] == ["c1", "c2"]
    assert [m["conn_id"] for m in await b.presence_list("exam:1", now=t + 10)] == ["c1"]
    # Pruned for good, not just hidden.
    assert [m["conn_id"] for m in await b.presence_list("exam:1", now=t)] == ["c1"]
    assert await b.presence_list("exam:1", now=t + 18) == []


async def test_heartbeats_and_lists_of_many_rooms_at_once(engines: Pair) -> None:
    a, b = engines
    t = time.time()
    await a.presence_join("exam:1", "c1", {"user": "u1"}, ttl_s=10, now=t)
    await a.presence_join("exam:1", "c2", {"user": "u2"}, ttl_s=10, now=t)
    await a.presence_join("exam:2", "c3", {"user": "u3"}, ttl_s=10, now=t)
    alive = await a.presence_heartbeat_many(
        [("exam:1", "c1"), ("exam:2", "c3"), ("exam:2", "never")], ttl_s=10, now=t + 8
    )
    assert alive == [True, True, False]
    lists = await b.presence_list_many(["exam:1", "exam:2", "exam:3"], now=t + 12)
    assert [[m["conn_id"] for m in members] for members in lists] == [["c1"], ["c3"], []]
    assert lists[0][0]["user"] == "u1"


async def test_heartbeat_tells_a_forgotten_connection_to_join_again(engines: Pair) -> None:
    a, b = engines
    t = time.time()
    assert not await a.presence_heartbeat("exam:1", "never", ttl_s=10, now=t)
    await a.presence_join("exam:1", "c1", {"user": "u1"}, ttl_s=10, now=t)
    assert not await b.presence_heartbeat("exam:1", "c1", ttl_s=10, now=t + 10)
    assert await b.presence_list("exam:1", now=t) == []


async def test_presence_uses_the_engine_clock_by_default(engines: Pair) -> None:
    a, b = engines
    await a.presence_join("exam:1", "c1", {"user": "u1"}, ttl_s=0.1)
    assert len(await b.presence_list("exam:1")) == 1
    await asyncio.sleep(0.15)
    assert await b.presence_list("exam:1") == []


# Timers


async def test_timers_fire_once_at_their_time(engines: Pair) -> None:
    a, b = engines
    t = 1_800_000_000.0
    await a.timer_schedule("e1:accept:2", t + 600, {"exam": "e1", "level": 2})
    await a.timer_schedule("e1:accept:1", t + 300, {"exam": "e1", "level": 1})
    await a.timer_schedule("e2:accept:1", t + 300, {"exam": "e2", "level": 1})
    assert await b.timer_count() == 3
    assert await b.timer_claim_due(t + 299.9) == []
    assert await b.timer_claim_due(t + 300) == [
        ("e1:accept:1", {"exam": "e1", "level": 1}),
        ("e2:accept:1", {"exam": "e2", "level": 1}),
    ]
    assert await a.timer_claim_due(t + 300) == []
    assert await a.timer_count() == 1
    assert await a.timer_claim_due(t + 10_000) == [("e1:accept:2", {"exam": "e1", "level": 2})]
    assert await a.timer_count() == 0


async def test_rescheduling_a_key_replaces_it_and_cancel_forgets_it(engines: Pair) -> None:
    a, b = engines
    await a.timer_schedule("k", 100.0, {"v": 1})
    await b.timer_schedule("k", 200.0, {"v": 2})
    assert await a.timer_count() == 1
    assert await a.timer_claim_due(150.0) == []
    await a.timer_schedule("gone", 50.0, {})
    await b.timer_cancel("gone")
    await b.timer_cancel("never-scheduled")
    assert await a.timer_claim_due(200.0) == [("k", {"v": 2})]


async def test_timers_scheduled_together_are_each_scheduled(engines: Pair) -> None:
    a, b = engines
    await a.timer_schedule("e1:accept:1", 500.0, {"v": 0})
    await a.timer_schedule_many(
        [("e1:accept:1", 100.0, {"v": 1}), ("e1:accept:2", 300.0, {"v": 2}), ("k", 50.0, {})]
        + [("k", 200.0, {"v": 3})]
    )
    await a.timer_schedule_many([])
    assert await b.timer_count() == 3
    assert await b.timer_claim_due(1000.0) == [
        ("e1:accept:1", {"v": 1}),
        ("k", {"v": 3}),
        ("e1:accept:2", {"v": 2}),
    ]


async def test_claim_respects_the_limit_earliest_first(engines: Pair) -> None:
    a, _ = engines
    for n in range(10):
        await a.timer_schedule(f"k{n}", 100.0 - n, {"n": n})
    assert [k for k, _ in await a.timer_claim_due(1000.0, limit=3)] == ["k9", "k8", "k7"]
    assert await a.timer_count() == 7


async def test_each_timer_is_claimed_exactly_once_by_concurrent_workers(engines: Pair) -> None:
    a, b = engines
    keys = [f"exam{n}:report:1" for n in range(500)]
    for n, key in enumerate(keys):
        await a.timer_schedule(key, 1000.0 + n % 7, {"n": n})

    async def worker(engine: Engine) -> list[str]:
        claimed: list[str] = []
        while batch := await engine.timer_claim_due(2000.0, limit=7):
            claimed += [k for k, _ in batch]
            await asyncio.sleep(0)
        return claimed

    # Two workers per engine, interleaving their claims.
    results = await asyncio.gather(worker(a), worker(b), worker(a), worker(b))
    assert all(results), "every worker claimed some timers: they did run concurrently"
    claimed = [key for result in results for key in result]
    assert sorted(claimed) == sorted(keys)
    assert await a.timer_count() == 0


# Counters


async def test_hits_count_in_a_fixed_window_shared_by_processes(engines: Pair) -> None:
    a, b = engines
    assert [await a.hit("login:dr.b", 60), await b.hit("login:dr.b", 60)] == [1, 2]
    assert await a.hit("login:ide.a", 60) == 1
    await b.reset("login:dr.b")
    assert await a.hit("login:dr.b", 60) == 1


async def test_a_window_closes_after_window_s(engines: Pair) -> None:
    a, b = engines
    assert await a.hit("k", 0.1) == 1
    assert await b.hit("k", 0.1) == 2  # does not extend the window
    await asyncio.sleep(0.15)
    assert await a.hit("k", 0.1) == 1


async def test_peek_reads_a_count_without_hitting(engines: Pair) -> None:
    a, b = engines
    assert await a.peek("login:x") == 0
    await a.hit("login:x", 0.1)
    await b.hit("login:x", 0.1)
    assert [await b.peek("login:x"), await a.peek("login:x")] == [2, 2]
    await asyncio.sleep(0.15)
    assert await a.peek("login:x") == 0


async def test_remaining_tells_how_long_a_window_stays_open(engines: Pair) -> None:
    a, b = engines
    assert await a.remaining("login:wait") == 0
    await a.hit("login:wait", 30)
    assert 25 < await b.remaining("login:wait") <= 30
    await b.reset("login:wait")
    assert await a.remaining("login:wait") == 0


# Leases


async def test_a_lease_has_one_owner_until_released(engines: Pair) -> None:
    a, b = engines
    assert await a.lease("call:e1", "node-a", 10) == "node-a"
    assert await b.lease("call:e1", "node-b", 10) == "node-a"  # taken
    assert await a.lease("call:e1", "node-a", 10) == "node-a"  # renewed
    assert await b.lease_owner("call:e1") == "node-a"
    await b.lease_release("call:e1", "node-b")  # not b's: nothing happens
    assert await b.lease_owner("call:e1") == "node-a"
    await a.lease_release("call:e1", "node-a")
    assert await b.lease_owner("call:e1") is None
    assert await b.lease("call:e1", "node-b", 10) == "node-b"
    assert await a.lease_owner("call:e2") is None


async def test_a_lease_not_renewed_expires(engines: Pair) -> None:
    a, b = engines
    assert await a.lease("call:e1", "node-a", 0.1) == "node-a"
    await asyncio.sleep(0.15)  # node-a's process died: it renews no more
    assert await b.lease_owner("call:e1") is None
    assert await b.lease("call:e1", "node-b", 10) == "node-b"
