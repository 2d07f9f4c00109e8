"""Voice and video consults in the exam room (docs/calls.md)."""
