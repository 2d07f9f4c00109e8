"""Accountability to the hospitals: the exam's record and the monthly site report
(docs/accountability.md)."""
