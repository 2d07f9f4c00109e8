"""Accounts and live access in a real Chromium (docs/design.md "Accounts"): a
password changed on one device ends the session on the other, whose open room
returns to the login screen; "log out everywhere"; a radiologist reading a
request another one accepts is told who took it."""

from __future__ import annotations

import httpx
from playwright.async_api import expect
from sqlalchemy import delete, update

from server.composition import app_context
from server.core.models import Exam, ExamEvent
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP, TABLET
from tests.helpers import PASSWORD, exam_payload, login

NEW = "une toute nouvelle phrase"


async def new_exam(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        token = await login(http, "urg_a")
        resp = await http.post(
            "/api/exams", json=exam_payload(), headers={"Authorization": f"Bearer {token}"}
        )
        exam_id: str = resp.json()["id"]
        return exam_id


async def test_a_password_change_ends_the_other_device_and_log_out_everywhere(
    live_server: LiveServer, accounts, new_context, shot, js_errors
) -> None:
    base = live_server.url
    exam_id = await new_exam(base)
    desk = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "urg_a"), "desk")
    tablet = js_errors.watch(await loop.login(await new_context(TABLET), base, "urg_a"), "tablet")
    await tablet.goto(f"{base}/#/exam/{exam_id}")
    await expect(tablet.locator("#room-conn")).to_have_text("En ligne")

    await desk.click("#password")
    await desk.fill("#pw-current", PASSWORD)
    await desk.fill("#pw-new", NEW)
    await shot(desk, "password-dialog")
    await desk.click("#pw-save")
    await expect(desk.locator("#alerts")).to_contain_text("Mot de passe changé")
    # The tablet's room socket is closed (4401): the page returns to the login screen.
    await expect(tablet.locator("#login-title")).to_be_visible()
    await shot(tablet, "session-ended")

    desk.on("dialog", lambda dialog: dialog.accept())
    await desk.click("#logout-everywhere")
    await expect(desk.locator("#login-title")).to_be_visible()
    async with httpx.AsyncClient(base_url=base) as http:
        assert await login(http, "urg_a", NEW)


async def test_the_radiologist_who_lost_the_race_reads_who_took_the_exam(
    live_server: LiveServer, accounts, new_context, shot, js_errors
) -> None:
    base = live_server.url
    exam_id = await new_exam(base)
    page = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad2"), "rad2")
    await page.goto(f"{base}/#/exam/{exam_id}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    async with httpx.AsyncClient(base_url=base) as http:
        token = await login(http, "rad")
        resp = await http.post(
            f"/api/exams/{exam_id}/accept", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 200
    await expect(page.locator("main h1")).to_have_text("Cet examen a été pris par RAD.")
    await expect(page.locator("#alerts")).to_contain_text("Demande prise par un autre radiologue")
    await shot(page, "exam-taken")


async def test_a_room_ahead_of_a_restored_database_starts_again_from_the_log(
    live_server: LiveServer, accounts, new_context, settings, js_errors
) -> None:
    """The page saw seq 3; the database is restored to a backup holding seq 1 only:
    on reconnecting, the welcome says reset, and the room shows the log as it is."""
    base = live_server.url
    exam_id = await new_exam(base)
    context = await new_context(TABLET)
    page = js_errors.watch(await loop.login(context, base, "urg_a"), "urgentist")
    await page.goto(f"{base}/#/exam/{exam_id}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    for text in ("avant la sauvegarde", "après la sauvegarde"):
        await loop.say(page, text)
        await expect(loop.bubble(page, text)).to_have_attribute("data-state", "sent")
    async with app_context(settings) as app, app.db() as db:
        await db.execute(delete(ExamEvent).where(ExamEvent.exam_id == exam_id, ExamEvent.seq > 1))
        await db.execute(update(Exam).where(Exam.id == exam_id).values(last_seq=1))
        await db.commit()
    await context.set_offline(True)
    await expect(page.locator("#room-conn")).to_have_text("Hors ligne — reconnexion…")
    await context.set_offline(False)
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    await expect(loop.bubble(page, "après la sauvegarde")).to_have_count(0)
    await loop.say(page, "reprise")
    await expect(loop.bubble(page, "reprise")).to_have_attribute("data-state", "sent")
