"""Commands that move an exam through its lifecycle (docs/api.md "Exams and
commands", docs/rooms.md "Exam lifecycle"), run as a caller.

Each command is checked by ``rooms.lifecycle.decide`` and then written as one
``UPDATE ... RETURNING`` of the exam row plus its event, with the audit row, in
one transaction; the event is published once committed. A command that does not
fit the exam's state is refused (409) and writes nothing. The routes only parse
the request and answer (server/web/api/commands.py, server/web/api/reports.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.lifecycle import Command, LifecycleError, decide, sources
from rooms.types import ExamStatus, Role
from server.core import audit
from server.core.channels import notify
from server.core.context import AppContext
from server.core.errors import ApiError
from server.core.identity import Principal
from server.core.models import Exam, ExamEvent
from server.exams import owed, protocols
from server.exams.authz import load_exam
from server.exams.publish import publish_events
from server.exams.service import append_event, exam_json


class ProtocolBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


# Given the exam, the parsed body (or None), the caller and the time, return
# the columns to change beside the status, and the event body.
Changes = tuple[dict[str, Any], dict[str, Any]]
Effect = Callable[[Exam, Any, Principal, datetime], Changes]
# The same, for a command that writes rows of its own (a report, billing acts) in
# the command's transaction.
AsyncEffect = Callable[[AsyncSession, Exam, Principal, datetime], Awaitable[Changes]]


def _accept(exam: Exam, _b: None, who: Principal, now: datetime) -> Changes:
    return {"accepted_at": now, "assigned_radiologist_id": who.user.id}, {
        "radiologist": {"id": who.user.id, "display_name": who.user.display_name}
    }


def _protocol(exam: Exam, body: ProtocolBody, _w: Principal, now: datetime) -> Changes:
    version = None
    if body.protocol_id is not None:
        entry = protocols.find(body.protocol_id)
        if entry is None:
            raise ApiError(
                422,
                "invalid_fields",
                "unknown protocol_id",
                fields=[{"field": "protocol_id", "message": "not in the catalogue"}],
            )
        version = entry["version"]
    return (
        {
            "protocoled_at": now,
            "protocol_id": body.protocol_id,
            "protocol_text": body.text,
            "protocol_ack_at": None,
        },
        {
            "protocol_id": body.protocol_id,
            "protocol_version": version,
            "text": body.text,
            "replaces_previous": exam.protocol_text is not None,
        },
    )


def _protocol_ack(exam: Exam, _b: None, _w: Principal, now: datetime) -> Changes:
    return {"protocol_ack_at": now}, {"protocol_id": exam.protocol_id}


def _images_complete(exam: Exam, _b: None, _w: Principal, now: datetime) -> Changes:
    return {"images_complete_at": now}, {}


def _cancel(exam: Exam, body: CancelBody, _w: Principal, now: datetime) -> Changes:
    return {"cancelled_at": now, "cancel_reason": body.reason}, {
        "reason": body.reason,
        "previous_status": exam.status,
    }


@dataclass(frozen=True)
class Simple:
    """A command that only changes the exam row: its effect, and the body it
    carries (None: no body)."""

    effect: Effect
    body: type[BaseModel] | None = None


# The commands of ``POST /api/exams/{id}/<command>``; the report's commands
# (draft, signature, addenda, acknowledgement) write their own rows.
SIMPLE: dict[Command, Simple] = {
    Command.ACCEPT: Simple(_accept),
    Command.PROTOCOL: Simple(_protocol, ProtocolBody),
    Command.PROTOCOL_ACK: Simple(_protocol_ack),
    Command.IMAGES_COMPLETE: Simple(_images_complete),
    Command.CANCEL: Simple(_cancel, CancelBody),
}


def lifecycle_error(exc: LifecycleError) -> ApiError:
    code = "wrong_state" if exc.http_status == 409 else "forbidden"
    return ApiError(exc.http_status, code, str(exc))


async def execute(
    app: AppContext,
    principal: Principal,
    exam_id: str,
    command: Command,
    effect: AsyncEffect,
    *,
    addr: str | None,
) -> tuple[Exam, ExamEvent, dict[str, Any]]:
    """Check ``command`` against the lifecycle and apply it in one transaction.

    ``effect`` may write its own rows (a report, billing acts) in the same
    transaction before the event is appended; the audit row (from ``addr``)
    goes in last. The event is published once committed. Returns the exam, the
    event and the exam's JSON as the caller sees it.
    """
    now = app.now()
    async with app.db() as db:
        exam = await load_exam(db, principal, exam_id)
        try:
            transition = decide(ExamStatus(exam.status), command, Role(principal.role))
        except LifecycleError as exc:
            raise lifecycle_error(exc) from None
        changes, event_body = await effect(db, exam, principal, now)
        changes["status"] = transition.new_status
        event = await append_event(
            db,
            exam.id,
            transition.event_kind,
            principal.user.id,
            event_body,
            now,
            from_status=sources(command, transition.new_status),
            changes=changes,
        )
        # What the change owes the hospital's systems commits with it (docs/hl7.md).
        await owed.enqueue(
            db, exam, transition.event_kind, now, version=int(event_body.get("number", 0))
        )
        await audit.record(
            db,
            action=f"command.{command.value}",
            who=principal,
            exam_id=exam.id,
            addr=addr,
            at=app.now(),
        )
        await db.commit()
        await db.refresh(exam)
        result = exam_json(exam, app.settings, principal.role)
    await publish_events(app, exam, [event])
    return exam, event, result


async def run(
    app: AppContext,
    principal: Principal,
    exam_id: str,
    command: Command,
    body: BaseModel | None,
    *,
    addr: str | None,
) -> dict[str, Any]:
    """Run one of the :data:`SIMPLE` commands with its parsed ``body``; the
    exam's JSON after it. Accepting a request tells every radiologist who took it."""
    simple = SIMPLE[command]

    async def apply(_db: AsyncSession, exam: Exam, who: Principal, now: datetime) -> Changes:
        return simple.effect(exam, body, who, now)

    exam, _event, result = await execute(app, principal, exam_id, command, apply, addr=addr)
    if command is Command.ACCEPT:
        await announce_taken(app, exam, principal)
    return result


async def announce_taken(app: AppContext, exam: Exam, taker: Principal) -> None:
    """Tell every radiologist who took the request (their worklists drop it; those
    in its room are closed with the same news, server/live/room.py). Only the exam's
    identifiers: the others may no longer see it."""
    await notify(
        app,
        "exam.taken",
        {"id": exam.id, "accession_number": exam.accession_number},
        {"radiologist": {"id": taker.user.id, "display_name": taker.user.display_name}},
        roles=[Role.RADIOLOGIST],
    )
