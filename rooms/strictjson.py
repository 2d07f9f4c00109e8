"""Strict JSON for what clients send: RFC 8259 text that every layer behind it can hold.

``json.loads`` accepts more than the application can carry: ``NaN`` and ``Infinity``
(not JSON, RFC 8259 section 6), integers of any length (Python refuses to convert more
than 4,300 digits with a ``ValueError``; PostgreSQL and SQLite store at most 64 bits),
nesting until the interpreter's recursion limit (``RecursionError``), and strings with
NUL or lone surrogates (``"\\u0000"``, ``"\\ud800"``), which PostgreSQL's text types and
UTF-8 cannot hold. :func:`loads` refuses each with a :class:`JsonRefused` whose ``code``
says which (docs/design.md "Crafted input"); the HTTP API answers it as a 400 and the
room as an ``error`` frame. Sans-I/O: text in, a value or the exception out.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # the deepest body of the API has three levels
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # a signed 64-bit column, on both databases
_INT_CHARS = len(str(INT_MIN))  # '-' and 19 digits: longer cannot be in range


class JsonRefused(ValueError):
    """Why a text was refused: ``code`` is one of ``bad_json``, ``json_too_deep``,
    ``number_too_large``, ``nul_character``, ``bad_encoding``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _int(text: str) -> int:
    # Checked on the text first: converting 4,300 digits and more is refused by Python,
    # and converting fewer still costs quadratic time.
    if len(text) <= _INT_CHARS:
        value = int(text)
        if INT_MIN <= value <= INT_MAX:
            return value
    raise JsonRefused("number_too_large", "integers are limited to 64 bits")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("number_too_large", "numbers are limited to the 64-bit float range")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused("bad_json", f"{name} is not JSON (RFC 8259 section 6)")


def _check_string(s: str) -> None:
    if "\x00" in s:
        raise JsonRefused("nul_character", "strings may not contain the NUL character")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefused("bad_encoding", "strings may not hold a lone surrogate") from None


def _check(value: Any, max_depth: int) -> None:
    """Depth, and every string (keys too), without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise JsonRefused("json_too_deep", f"JSON is limited to {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of ``text``, or :class:`JsonRefused` naming what is wrong with it."""
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except JsonRefused:
        raise
    except RecursionError:  # the decoder's own limit, deeper than ours
        raise JsonRefused("json_too_deep", f"JSON is limited to {max_depth} levels") from None
    except ValueError as exc:
        raise JsonRefused("bad_json", f"not valid JSON: {exc}") from None
    _check(value, max_depth)
    return value
