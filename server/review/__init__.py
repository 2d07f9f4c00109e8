"""Peer review of signed reports (issue #22, docs/review.md)."""
