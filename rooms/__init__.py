"""The sans-I/O core of an exam room: state machine, permissions, frames, escalation policy.

Nothing here performs I/O or reads a clock except the engines in `rooms.engine`, which
fan messages out and keep presence, timers and counters (see docs/rooms.md).
"""
