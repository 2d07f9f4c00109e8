"""Checkpoints of the audit chain's head, kept where the database cannot rewrite them.

The hash chain (server/core/audit.py) shows an edited or deleted row by the row after
it; the newest rows have no row after them, so deleting them leaves a shorter chain
that is still intact. A checkpoint records the head (row id, row hash, time) in an
append-only file outside the database, one JSON line per checkpoint, each line
signed with HMAC-SHA256 (RFC 2104) under a key kept in a file outside the database,
and each line carrying the previous line's MAC so that a line removed from the
middle shows. The same line goes to the log (logger ``teleimagerie.audit``) so it
can be shipped elsewhere.

Verifying the latest checkpoint is enough: a row's hash covers the row before it,
so the checkpointed row still holding its checkpointed hash proves every row up to
it unchanged. Rows written since the last checkpoint are covered by the next one
(the worker writes one every ``AUDIT_CHECKPOINT_EVERY_S`` when the head moved).
See docs/reports.md "Audit trail".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import AuditEntry
from server.core.config import Settings
from server.core.context import AppContext

log = logging.getLogger("teleimagerie.audit")

VERSION = 1
#: A key shorter than this is refused: HMAC-SHA256's key should be a full block of entropy.
MIN_KEY_BYTES = 32


class AnchorError(Exception):
    """The checkpoints cannot be written or read as configured (a setting, a key)."""


@dataclass(frozen=True)
class Checkpoint:
    n: int  # the line's number in the file, from 1
    row: int  # the head row's id (0: an empty chain)
    hash: str  # the head row's hash
    at: str  # when the checkpoint was taken (UTC, ISO 8601)
    mac: str  # the line's HMAC, which the next line carries as ``prev``


def load_key(path: Path) -> bytes:
    """The HMAC key: the key file's bytes, surrounding whitespace removed."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AnchorError(f"cannot read the checkpoint key file {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise AnchorError(f"the checkpoint key in {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def configured(settings: Settings) -> tuple[Path, bytes] | None:
    """(checkpoint file, key) when checkpoints are configured, else None."""
    path, key_file = settings.audit_checkpoint_file, settings.audit_checkpoint_key_file
    if path is None:
        return None
    if key_file is None:
        raise AnchorError("AUDIT_CHECKPOINT_FILE is set but AUDIT_CHECKPOINT_KEY_FILE is not")
    return path, load_key(key_file)


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign_line(key: bytes, n: int, row: int, row_hash: str, at: str, prev: str) -> str:
    """One checkpoint line (JSON, no newline)."""
    fields = {"v": VERSION, "n": n, "row": row, "hash": row_hash, "at": at, "prev": prev}
    return json.dumps({**fields, "mac": _mac(key, fields)}, separators=(",", ":"))


def read_checkpoints(path: Path, key: bytes) -> list[Checkpoint]:
    """Every line of the file, each signature and link checked; AnchorProblem at
    the first line that does not hold."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorProblem(f"the checkpoint file {path} cannot be read: {exc}") from None
    found: list[Checkpoint] = []
    prev = ""
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            doc = json.loads(line)
            fields = {k: doc[k] for k in ("v", "n", "row", "hash", "at", "prev")}
            mac = doc["mac"]
        except (ValueError, KeyError, TypeError):
            raise AnchorProblem(f"checkpoint line {number} is not a checkpoint") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, fields)):
            raise AnchorProblem(f"checkpoint line {number}: signature invalid")
        if fields["n"] != number or fields["prev"] != prev:
            raise AnchorProblem(
                f"checkpoint line {number}: does not follow line {number - 1} "
                "(a line was removed, reordered or copied from another file)"
            )
        if found and fields["row"] < found[-1].row:
            raise AnchorProblem(f"checkpoint line {number}: its row goes back")
        found.append(
            Checkpoint(number, int(fields["row"]), str(fields["hash"]), str(fields["at"]), mac)
        )
        prev = mac
    return found


class AnchorProblem(Exception):
    """What ``audit verify`` reports: the checkpoints or the chain disagree."""


async def head(db: AsyncSession) -> tuple[int, str]:
    """The newest row's (id, hash); (0, "") for an empty table."""
    last = (
        await db.execute(
            select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
        )
    ).first()
    return (last.id, last.hash) if last else (0, "")


def append_checkpoint(path: Path, key: bytes, row: int, row_hash: str) -> str | None:
    """Append a checkpoint of (row, hash) unless the last line already holds that
    row; returns the line written. The file is locked while its last line is read
    and the new one appended, so that workers sharing it keep one chain of lines.
    Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        existing = read_checkpoints(path, key)
        if existing and existing[-1].row == row and existing[-1].hash == row_hash:
            return None
        prev = existing[-1].mac if existing else ""
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        line = sign_line(key, len(existing) + 1, row, row_hash, at, prev)
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return line


async def checkpoint(app: AppContext) -> str | None:
    """Take a checkpoint of the current head; the line written, or None when
    checkpoints are not configured or the head has not moved. Logged as JSON."""
    conf = configured(app.settings)
    if conf is None:
        return None
    path, key = conf
    async with app.db() as db:
        row, row_hash = await head(db)
    line = await asyncio.to_thread(append_checkpoint, path, key, row, row_hash)
    if line is not None:
        doc = json.loads(line)
        log.info(json.dumps({"event": "audit.checkpoint", **doc}, separators=(",", ":")))
    return line


async def checkpoint_loop(app: AppContext, stop: asyncio.Event) -> None:
    """Checkpoint at start, then every ``AUDIT_CHECKPOINT_EVERY_S`` while the head
    moves, until ``stop`` is set. Does nothing when checkpoints are not configured."""
    if app.settings.audit_checkpoint_file is None:
        return
    every = max(app.settings.audit_checkpoint_every_s, 1)
    while not stop.is_set():
        try:
            await checkpoint(app)
        except Exception:  # a full disk or a database away: try again at the next turn
            log.exception("writing an audit checkpoint failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def check_against(db: AsyncSession, latest: Checkpoint) -> None:
    """AnchorProblem unless the chain still holds the checkpointed row with the
    checkpointed hash (call after the chain itself verified)."""
    if latest.row == 0:
        return
    found = await db.scalar(select(AuditEntry.hash).where(AuditEntry.id == latest.row))
    if found is None:
        last = await db.scalar(select(func.max(AuditEntry.id))) or 0
        raise AnchorProblem(
            f"audit chain TRUNCATED after row {last}: the checkpoint of {latest.at} "
            f"(line {latest.n}) saw row {latest.row}; rows {last + 1}..{latest.row} "
            "at least were deleted"
        )
    if found != latest.hash:
        raise AnchorProblem(
            f"audit chain REWRITTEN: row {latest.row} does not hold the hash the "
            f"checkpoint of {latest.at} (line {latest.n}) saw; rows up to it were "
            "deleted, replaced or re-hashed"
        )
