"""Log lines: one JSON object each, with the traceback of a logged exception."""

from __future__ import annotations

import io
import json
import logging

from server.core.logs import JsonFormatter


def lines_of(emit) -> list[dict]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("teleimagerie.test_logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        emit(log)
    finally:
        log.handlers[:] = []
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_plain_message_is_wrapped() -> None:
    (line,) = lines_of(lambda log: log.warning("call %s ended", "c-1"))
    assert line == {
        "event": "log",
        "level": "WARNING",
        "logger": "teleimagerie.test_logs",
        "message": "call c-1 ended",
    }


def test_a_json_message_is_kept_as_written() -> None:
    (line,) = lines_of(lambda log: log.info(json.dumps({"event": "exam.created", "exam": 7})))
    assert line == {"event": "exam.created", "exam": 7}


def raise_and_log(log: logging.Logger, msg: str) -> None:
    try:
        {}["missing"]
    except KeyError:
        log.exception(msg)


def test_an_exception_keeps_its_traceback() -> None:
    (line,) = lines_of(lambda log: raise_and_log(log, "call task failed"))
    assert line["message"] == "call task failed"
    assert line["level"] == "ERROR"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "KeyError: 'missing'" in line["exception"]
    assert "raise_and_log" in line["exception"]


def test_an_exception_joins_a_json_message() -> None:
    (line,) = lines_of(lambda log: raise_and_log(log, json.dumps({"event": "hl7.failed"})))
    assert line["event"] == "hl7.failed"
    assert "KeyError: 'missing'" in line["exception"]
