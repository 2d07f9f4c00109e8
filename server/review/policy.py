"""The rules of peer review (docs/review.md), pure functions: which signed reports are
drawn for a second reading, who reads them, how a RADPEER score is given and which
scores are significant discrepancies, and the monthly figures per radiologist.

The draw is deterministic, so that it can be tested and audited: a report is drawn when
the first 64 bits of SHA-256(``seed`` ":" ``exam_id``), read as a fraction of 2**64, are
below the share (``PEER_REVIEW_SHARE``, 0.05 for 5 %). The reviewer is chosen by
rendezvous hashing among the radiologists available, never the author: each candidate's
weight is SHA-256(``seed`` ":" ``exam_id`` ":" ``user_id``) and the highest wins, so the
reviews spread evenly and the same exam always goes to the same reviewer while the
candidates are the same.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

# RADPEER (American College of Radiology, 2016 revision): 1 concur with the
# interpretation; 2 discrepancy in interpretation, not ordinarily expected to be made
# (understandable miss); 3 discrepancy that should be made most of the time; 4 should be
# made almost every time (misinterpretation of a finding). The letter: "a" unlikely to be
# clinically significant, "b" likely to be clinically significant.
RADPEER_SCORES = ("1", "2a", "2b", "3a", "3b", "4a", "4b")
Score = Literal["1", "2a", "2b", "3a", "3b", "4a", "4b"]


def significant(score: str) -> bool:
    """A significant discrepancy (the author and the coordinators are notified): any
    score marked "b", likely to be clinically significant (2b, 3b, 4b)."""
    return score in RADPEER_SCORES and score.endswith("b")


def _fraction(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def drawn(exam_id: str, share: float, seed: str = "") -> bool:
    """Whether a signed report is drawn for review at ``share`` (0 to 1)."""
    return _fraction(f"{seed}:{exam_id}") < share


def reviewer_for(
    exam_id: str, author_id: int, candidates: Iterable[int], seed: str = ""
) -> int | None:
    """The second radiologist: one of ``candidates`` that is not the author (None when
    there is none: the review waits, unassigned, for the coordinators)."""
    others = sorted({c for c in candidates if c != author_id})
    if not others:
        return None
    return max(others, key=lambda c: _fraction(f"{seed}:{exam_id}:{c}"))


Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]


class ReviewScore(BaseModel):
    """What the reviewer gives: a RADPEER score, with a comment required from 2 up."""

    model_config = ConfigDict(extra="forbid")

    score: Score
    comment: Comment = ""

    @model_validator(mode="after")
    def _comment_for_a_discrepancy(self) -> ReviewScore:
        if self.score != "1" and not self.comment:
            raise ValueError("a comment is required for a score of 2 or more")
        return self

    @property
    def significant(self) -> bool:
        return significant(self.score)


def figures(scores: Iterable[tuple[int, str]]) -> dict[int, dict[str, int]]:
    """Per author, the number of reviews of each score (every score present, 0 when
    none) and their total, from (author id, score) pairs."""
    counts: dict[int, Counter[str]] = {}
    for author, score in scores:
        counts.setdefault(author, Counter())[score] += 1
    return {
        author: {**{s: c[s] for s in RADPEER_SCORES}, "total": sum(c.values())}
        for author, c in counts.items()
    }
