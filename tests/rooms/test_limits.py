import pytest

from rooms.limits import TokenBucket


def test_a_full_bucket_lets_a_burst_through_then_refuses() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    for _ in range(3):
        bucket.allow(100.0)
    assert not bucket.allow(100.49)  # 0.98 token
    assert bucket.allow(100.5)  # 1 token
    assert not bucket.allow(100.5)


def test_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.allow(0.0)
    assert [bucket.allow(3600.0) for _ in range(3)] == [True, True, False]


def test_sustained_rate_is_the_rate() -> None:
    bucket = TokenBucket(rate=4, burst=4)
    # 8 attempts a second for 10 s (binary-exact times): the burst, then 4 a second.
    allowed = sum(bucket.allow(k / 8) for k in range(81))
    assert allowed == 4 + 4 * 10


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.allow(50.0)
    assert not bucket.allow(10.0)
    assert not bucket.allow(50.5)
    assert bucket.allow(51.0)


def test_cost_takes_several_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=4)
    assert bucket.allow(0.0, cost=3)
    assert not bucket.allow(0.0, cost=2)
    assert bucket.allow(0.0, cost=1)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_nonsense_parameters_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
