"""Checkpoints of the audit chain's head: deleting the newest rows is caught."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.composition import app_context
from server.core import audit
from server.core.audit_anchor import (
    AnchorError,
    AnchorProblem,
    checkpoint,
    checkpoint_loop,
    read_checkpoints,
)
from server.core.config import Settings
from tests.reports.test_audit import _fill, _tamper

KEY = b"k" * 40


@pytest.fixture
def anchored(settings: Settings, tmp_path: Path) -> Settings:
    key_file = tmp_path / "secret" / "checkpoint.key"
    key_file.parent.mkdir()
    key_file.write_bytes(KEY + b"\n")
    return settings.with_(
        audit_checkpoint_file=tmp_path / "anchor" / "audit-checkpoints.jsonl",
        audit_checkpoint_key_file=key_file,
    )


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "teleimagerie"
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    for name in ("AUDIT_CHECKPOINT_FILE", "AUDIT_CHECKPOINT_KEY_FILE"):
        env.pop(name, None)
        value = getattr(settings, name.lower())
        if value is not None:
            env[name] = str(value)
    return subprocess.run(  # noqa: ASYNC221, S603 - a short, bounded child process
        [str(script), "audit", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_the_normal_case_passes(anchored: Settings) -> None:
    async with app_context(anchored) as app:
        await _fill(app, 3)
        first = await checkpoint(app)
        assert first is not None
        assert await checkpoint(app) is None  # the head has not moved: no new line
        await _fill(app, 2)
    done = await asyncio.to_thread(_cli, anchored, "checkpoint")
    assert done.returncode == 0, done.stderr
    lines = read_checkpoints(anchored.audit_checkpoint_file, KEY)  # type: ignore[arg-type]
    assert [(c.n, c.row) for c in lines] == [(1, 3), (2, 5)]
    done = await asyncio.to_thread(_cli, anchored, "verify")
    assert done.returncode == 0, done.stderr
    assert "intact: 5 rows" in done.stdout and "row 5" in done.stdout


async def test_deleting_the_newest_rows_is_named(anchored: Settings) -> None:
    async with app_context(anchored) as app:
        await _fill(app, 6)
        await checkpoint(app)
        await _tamper(app, "DELETE FROM audit_log WHERE id >= 5")
        async with app.db() as db:
            count, _head, broken = await audit.verify(db)
    assert (count, broken) == (4, None)  # the chain alone cannot see it
    done = await asyncio.to_thread(_cli, anchored, "verify")
    assert done.returncode == 1, done.stdout
    assert "TRUNCATED after row 4" in done.stderr and "saw row 6" in done.stderr


async def test_truncating_then_writing_again_is_named(anchored: Settings) -> None:
    """Rows deleted, then new rows chained after what is left: the checkpointed id
    exists again, with another hash."""
    async with app_context(anchored) as app:
        await _fill(app, 4)
        await checkpoint(app)
        await _tamper(app, "DELETE FROM audit_log WHERE id >= 3")
        await _fill(app, 3)
    done = await asyncio.to_thread(_cli, anchored, "verify")
    assert done.returncode == 1
    assert "REWRITTEN: row 4" in done.stderr


async def test_a_tampered_checkpoint_line_is_named(anchored: Settings) -> None:
    path = anchored.audit_checkpoint_file
    assert path is not None
    async with app_context(anchored) as app:
        await _fill(app, 2)
        await checkpoint(app)
        await _fill(app, 1)
        await checkpoint(app)
    lines = path.read_text().splitlines()
    # Move the anchor back to row 2, as someone about to delete row 3 would.
    doc = json.loads(lines[1])
    doc["row"] = 2
    path.write_text(lines[0] + "\n" + json.dumps(doc) + "\n")
    done = await asyncio.to_thread(_cli, anchored, "verify")
    assert done.returncode == 1
    assert "checkpoint line 2: signature invalid" in done.stderr
    # Removing the newest line whole leaves a valid file; removing one before it does not.
    path.write_text(lines[1] + "\n")
    with pytest.raises(AnchorProblem, match="line 1: does not follow"):
        read_checkpoints(path, KEY)
    # Nor does a key other than the one that signed.
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnchorProblem, match="line 1: signature invalid"):
        read_checkpoints(path, b"x" * 40)
    assert [c.row for c in read_checkpoints(path, KEY)] == [2, 3]


async def test_a_missing_or_short_key_refuses(anchored: Settings, tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    async with app_context(anchored.with_(audit_checkpoint_key_file=short)) as app:
        with pytest.raises(AnchorError, match="shorter than 32 bytes"):
            await checkpoint(app)
    done = await asyncio.to_thread(
        _cli, anchored.with_(audit_checkpoint_key_file=tmp_path / "absent.key"), "verify"
    )
    assert done.returncode == 2 and "cannot read the checkpoint key file" in done.stderr


async def test_the_worker_loop_checkpoints_and_logs_each_line(
    anchored: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path = anchored.audit_checkpoint_file
    assert path is not None
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="teleimagerie.audit"):
        async with app_context(anchored.with_(audit_checkpoint_every_s=1)) as app:
            loop = asyncio.create_task(checkpoint_loop(app, stop))
            await _fill(app, 2)
            for _ in range(100):  # the next turn (at most a second away) takes row 2
                if path.exists() and read_checkpoints(path, KEY)[-1].row == 2:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await loop
    rows = [c.row for c in read_checkpoints(path, KEY)]
    assert rows[-1] == 2 and rows == sorted(set(rows))
    logged = [
        json.loads(r.getMessage()) for r in caplog.records if "audit.checkpoint" in r.getMessage()
    ]
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [{k: v for k, v in d.items() if k != "event"} for d in logged] == written
