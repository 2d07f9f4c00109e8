"""The peer-review rules (server/review/policy.py, docs/review.md): the draw, the
reviewer never the author, the RADPEER score and its significant discrepancies."""

from __future__ import annotations

import random
import uuid

import pytest
from pydantic import ValidationError

from server.review.policy import (
    RADPEER_SCORES,
    ReviewScore,
    drawn,
    figures,
    reviewer_for,
    significant,
)

SEED = "test-seed"


def exam_ids(n: int, salt: str = "exams") -> list[str]:
    """A seeded set of exam ids shaped as the platform's (UUID strings)."""
    rng = random.Random(salt)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


def test_the_reviewer_is_never_the_author() -> None:
    rng = random.Random(22)
    for exam_id in exam_ids(3000):
        radiologists = rng.sample(range(1, 40), rng.randint(1, 8))
        author = rng.choice(radiologists)
        chosen = reviewer_for(exam_id, author, radiologists, SEED)
        if len(radiologists) == 1:
            assert chosen is None
        else:
            assert chosen in radiologists and chosen != author


def test_nobody_but_the_author_leaves_it_unassigned() -> None:
    assert reviewer_for("e1", 7, [7, 7], SEED) is None
    assert reviewer_for("e1", 7, [], SEED) is None


def test_reviews_spread_over_the_candidates_and_are_stable() -> None:
    ids = exam_ids(4000, "spread")
    picks = [reviewer_for(e, 1, [1, 2, 3, 4, 5], SEED) for e in ids]
    for c in (2, 3, 4, 5):
        assert 800 <= picks.count(c) <= 1200, (c, picks.count(c))
    # The same exam goes to the same reviewer, whatever the order of the candidates.
    assert [reviewer_for(e, 1, [5, 4, 3, 2, 1], SEED) for e in ids] == picks


@pytest.mark.parametrize("share", [0.05, 0.2])
def test_the_share_holds_on_a_seeded_set(share: float) -> None:
    ids = exam_ids(20000)
    chosen = [e for e in ids if drawn(e, share, SEED)]
    assert abs(len(chosen) / len(ids) - share) < 0.01, len(chosen)
    # Deterministic: the same set again, another seed another set.
    assert [e for e in ids if drawn(e, share, SEED)] == chosen
    assert [e for e in ids if drawn(e, share, "other")] != chosen


def test_the_edges_of_the_share() -> None:
    ids = exam_ids(500)
    assert not any(drawn(e, 0.0, SEED) for e in ids)
    assert all(drawn(e, 1.0, SEED) for e in ids)


def test_a_comment_is_required_from_2_up() -> None:
    assert ReviewScore(score="1").comment == ""
    for score in RADPEER_SCORES[1:]:
        with pytest.raises(ValidationError):
            ReviewScore(score=score)
        with pytest.raises(ValidationError):
            ReviewScore(score=score, comment="   ")
        assert ReviewScore(score=score, comment="Nodule missed").score == score
    for bad in ("2", "5", "2c", ""):
        with pytest.raises(ValidationError):
            ReviewScore(score=bad, comment="x")


def test_significant_discrepancies_are_the_b_scores() -> None:
    assert [s for s in RADPEER_SCORES if significant(s)] == ["2b", "3b", "4b"]
    assert ReviewScore(score="3b", comment="Fracture missed").significant
    assert not ReviewScore(score="3a", comment="Incidental").significant
    assert not significant("b")


def test_monthly_figures_count_each_score_per_author() -> None:
    got = figures([(1, "1"), (1, "1"), (1, "3b"), (2, "2a")])
    assert got[1] == {**dict.fromkeys(RADPEER_SCORES, 0), "1": 2, "3b": 1, "total": 3}
    assert got[2]["2a"] == 1 and got[2]["total"] == 1
    assert figures([]) == {}
