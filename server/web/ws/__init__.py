"""The WebSocket endpoints: the exam room and the personal channel (docs/api.md)."""
