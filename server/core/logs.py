"""One JSON object per log line, for every process (docs/deployment.md)."""

from __future__ import annotations

import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{"):
            return msg
        return json.dumps(
            {"event": "log", "level": record.levelname, "logger": record.name, "message": msg}
        )


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("teleimagerie")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
