"""One JSON object per log line, for every process (docs/deployment.md)."""

from __future__ import annotations

import json
import logging


class JsonFormatter(logging.Formatter):
    """A record as one JSON line. A message that is already a JSON object is kept as it
    is; an exception logged with the record (``log.exception``, ``exc_info=``) is added as
    ``"exception"``: its traceback, as Python prints it, in one string."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{") and not record.exc_info:
            return msg
        line = _object(msg) or {
            "event": "log",
            "level": record.levelname,
            "logger": record.name,
            "message": msg,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _object(msg: str) -> dict[str, object] | None:
    """``msg`` read as a JSON object, or None if it is not one."""
    if not msg.startswith("{"):
        return None
    try:
        value = json.loads(msg)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("teleimagerie")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
