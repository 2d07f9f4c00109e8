"""Reports: draft, signature, delivery formats, billing (docs/reports.md)."""
