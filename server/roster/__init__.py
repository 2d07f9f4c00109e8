"""The on-call roster: shifts, templates, bank holidays (docs/roster.md)."""
