"""Escalations against a real database and the memory engine: planning, firing once,
recipients, and the roster read from SQL (no server, no timers waited for)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from rooms.types import EventKind, ExamStatus
from server.composition import app_context
from server.core.config import Settings
from server.core.models import ExamEvent
from server.exams.escalation import rebuild, sync_timers
from server.exams.firing import fire
from server.exams.routing import route
from server.exams.service import append_event
from server.roster.service import PARIS, ShiftTemplate
from tests.conftest import Accounts
from tests.roster.conftest import add_shift, new_exam, user_id


def fast(settings: Settings) -> Settings:
    return settings.with_(ack_timeout_s=60, protocol_ack_timeout_s=60, report_warn_s=60,
                          report_sla_s=120, critical_ack_timeout_s=60)  # fmt: skip


async def raised(app: Any, exam_id: str) -> list[dict[str, Any]]:
    async with app.db() as db:
        rows = await db.scalars(
            select(ExamEvent)
            .where(ExamEvent.exam_id == exam_id, ExamEvent.kind == EventKind.ESCALATION_RAISED)
            .order_by(ExamEvent.seq)
        )
        return [e.body for e in rows]


async def move(
    app: Any, exam_id: str, kind: str, changes: dict[str, Any], body: Any = None
) -> None:
    async with app.db() as db:
        await append_event(db, exam_id, kind, None, body or {}, app.now(), changes=changes)
        await db.commit()


async def test_unaccepted_request_escalates_once_per_level(
    settings: Settings, accounts: Accounts
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with app_context(fast(settings)) as app:
        async with app.db() as db:
            await add_shift(db, "rad2", past, role="backup")
            backup = await user_id(db, "rad2")
            exam_id = await new_exam(app, db, past)
        heard: list[dict[str, Any]] = []
        await app.bus.subscribe(f"user:{backup}", heard.append)
        await app.bus.subscribe("role:coordinator", heard.append)

        await sync_timers(app, exam_id)
        assert await app.bus.timer_count() == 2
        payload = {"exam_id": exam_id}
        first = await fire(app, f"{exam_id}:accept:1", payload)
        assert first is not None and first.client_id == f"{exam_id}:accept:1"
        assert await fire(app, f"{exam_id}:accept:1", payload) is None  # once
        await fire(app, f"{exam_id}:accept:2", payload)
        await fire(app, f"{exam_id}:accept:2", payload)

        bodies = await raised(app, exam_id)
        assert [(b["level"], b["reason"], b["notified"]) for b in bodies] == [
            (1, "not_accepted", [backup]),
            (2, "not_accepted", ["coordinator"]),
        ]
        assert [(f["kind"], f["body"]["level"]) for f in heard] == [
            ("escalation.raised", 1),
            ("escalation.raised", 2),
        ]
        assert heard[0]["exam"]["id"] == exam_id
        # The raised keys are not scheduled again, by a sync or a rebuild.
        await sync_timers(app, exam_id)
        assert await app.bus.timer_count() == 0
        assert await rebuild(app) == 0


async def test_nothing_fires_once_the_exam_moved_on(settings: Settings, accounts: Accounts) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with app_context(fast(settings)) as app:
        async with app.db() as db:
            exam_id = await new_exam(app, db, past)
            fresh_id = await new_exam(app, db, datetime.now(UTC))
        await move(app, exam_id, EventKind.EXAM_ACCEPTED,
                   {"status": ExamStatus.ACCEPTED, "accepted_at": app.now()})  # fmt: skip
        assert await fire(app, f"{exam_id}:accept:1", {"exam_id": exam_id}) is None
        await sync_timers(app, exam_id)
        assert await app.bus.timer_count() == 0
        # Claimed before its time (a stale schedule): put back, not raised.
        assert await fire(app, f"{fresh_id}:accept:1", {"exam_id": fresh_id}) is None
        assert await app.bus.timer_count() == 1
        assert await raised(app, exam_id) == [] and await raised(app, fresh_id) == []


async def test_protocol_report_and_critical_recipients(
    settings: Settings, accounts: Accounts
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    async with app_context(fast(settings)) as app:
        async with app.db() as db:
            ids = {u: await user_id(db, u) for u in ("urg_a", "man_a", "rad", "coord")}
            protocol = await new_exam(app, db, past)
            report = await new_exam(app, db, past)
            unassigned = await new_exam(app, db, past)
            critical = await new_exam(app, db, past)
            benign = await new_exam(app, db, past)
        await move(
            app,
            protocol,
            EventKind.PROTOCOL_PROPOSED,
            {"status": ExamStatus.PROTOCOLED, "accepted_at": past, "protocoled_at": past},
        )
        for exam_id, rad in ((report, ids["rad"]), (unassigned, None)):
            await move(
                app,
                exam_id,
                EventKind.EXAM_IMAGES_COMPLETE,
                {
                    "status": ExamStatus.IMAGES_COMPLETE,
                    "images_complete_at": past,
                    "assigned_radiologist_id": rad,
                },
            )
        for exam_id, flag in ((critical, True), (benign, False)):
            await move(app, exam_id, EventKind.REPORT_SIGNED,
                       {"status": ExamStatus.REPORTED, "assigned_radiologist_id": ids["rad"],
                    "reported_at": past},
                       {"critical": flag})  # fmt: skip

        await fire(app, f"{protocol}:protocol_ack:1", {})
        await fire(app, f"{report}:report:1", {})
        await fire(app, f"{report}:report:2", {})
        await fire(app, f"{unassigned}:report:1", {})
        await fire(app, f"{critical}:critical:1", {})
        assert await fire(app, f"{benign}:critical:1", {}) is None

        notified = [(await raised(app, e))[0]["notified"] for e in (protocol, unassigned, critical)]
        assert notified == [[ids["man_a"], ids["urg_a"]], ["coordinator"], [ids["urg_a"]]]
        breach = await raised(app, report)
        assert [(b["reason"], b["notified"]) for b in breach] == [
            ("report_warning", [ids["rad"]]),
            ("report_breach", [ids["rad"], "coordinator"]),
        ]
        # What is left: unassigned:report:2 and critical:critical:2; raised keys are skipped.
        assert await rebuild(app) == 2


async def test_routing_reads_the_roster_from_sql(settings: Settings, accounts: Accounts) -> None:
    async with app_context(settings) as app, app.db() as db:
        rad, rad2 = await user_id(db, "rad"), await user_id(db, "rad2")
        db.add(ShiftTemplate(radiologist_id=rad, role="primary", pattern="weekend",
                             establishment_ids=[], valid_from=date(2026, 1, 1),
                             max_in_progress=1, created_at=app.now()))  # fmt: skip
        await db.commit()
        saturday = datetime(2027, 1, 16, 2, 0, tzinfo=PARIS)
        assert (await route(db, 1, saturday)).radiologist_id == rad
        session_start = datetime(2027, 1, 12, 8, 0, tzinfo=PARIS)
        await add_shift(db, "rad2", session_start, 10, kind="session", establishment_ids=[1])
        assert (await route(db, 1, session_start + timedelta(hours=2))).radiologist_id == rad2
        assert (await route(db, 2, session_start + timedelta(hours=2))).radiologist_id is None
        # rad is at the cap (1 exam in progress): nobody else on duty that Saturday.
        exam_id = await new_exam(app, db, saturday)
        async with app.db() as db2:
            await append_event(db2, exam_id, "exam.accepted", rad, {}, app.now(),
                               changes={"assigned_radiologist_id": rad})  # fmt: skip
            await db2.commit()
        choice = await route(db, 1, saturday)
        assert (choice.radiologist_id, str(choice.reason)) == (None, "all_at_capacity")
        count = await db.scalar(select(func.count()).select_from(ExamEvent))
        assert count == 2


async def test_a_higher_level_fired_first_raises_the_lower_one_before_it(
    settings: Settings, accounts: Accounts
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with app_context(fast(settings)) as app:
        async with app.db() as db:
            exam_id = await new_exam(app, db, past)
        await fire(app, f"{exam_id}:accept:2", {"exam_id": exam_id})
        assert [b["level"] for b in await raised(app, exam_id)] == [1, 2]
        assert await fire(app, f"{exam_id}:accept:1", {"exam_id": exam_id}) is None
