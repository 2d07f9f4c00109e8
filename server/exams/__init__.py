"""Exams: requests, the event log, authorisation, protocols, routing, escalation timers."""
