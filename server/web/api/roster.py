"""The roster over HTTP: ``/api/shifts``, ``/api/shift-templates``, ``/api/roster?at=T``.

Coordinators write the roster; radiologists may read it (it is their planning, and
holds no patient data). Establishments are named by code on the wire.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rooms.types import Role
from server.core.errors import ApiError, not_found
from server.core.identity import Principal
from server.core.models import Establishment, User
from server.exams.authz import require_role
from server.roster.service import (
    DEFAULT_MAX_IN_PROGRESS,
    PARIS,
    Shift,
    ShiftTemplate,
    bank_holiday,
    bank_holidays,
    duty_json,
    load_duties,
    roster_for,
)
from server.web.http import parse
from server.web.request import authenticate, ctx

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
HHMM = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
MAX_SHIFT = timedelta(days=14)
# Ids are INTEGER columns: a larger number names no row and PostgreSQL refuses it.
ROW_ID_MAX = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    radiologist: RowId | Annotated[str, StringConstraints(min_length=1, max_length=64)]
    role: Literal["primary", "backup"]
    establishments: Annotated[list[Code], Field(max_length=200)] = []
    max_in_progress: Annotated[int, Field(ge=1, le=50)] = DEFAULT_MAX_IN_PROGRESS


class ShiftBody(_Common):
    kind: Literal["oncall", "session"] = "oncall"
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    note: Annotated[str, StringConstraints(max_length=200)] | None = None

    @model_validator(mode="after")
    def _window(self) -> ShiftBody:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_SHIFT:
            raise ValueError("a shift lasts at most 14 days; use a template for recurrences")
        if self.kind == "session" and len(self.establishments) != 1:
            raise ValueError("a day session is for exactly one establishment")
        return self


class TemplateBody(_Common):
    pattern: Literal["weeknight", "weekend", "bank_holiday"]
    start_time: HHMM | None = None
    end_time: HHMM | None = None
    valid_from: date
    valid_until: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> TemplateBody:
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise ValueError("valid_until must not be before valid_from")
        return self


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_fields",
        f"invalid field: {field}",
        fields=[{"field": field, "message": message}],
    )


async def _radiologist(db: AsyncSession, ref: int | str) -> User:
    column = User.id if isinstance(ref, int) else User.username
    user = await db.scalar(select(User).where(column == ref))
    if user is None or user.role != Role.RADIOLOGIST or not user.active:
        raise _field_error("radiologist", "not an active radiologist")
    return user


async def _establishment_ids(db: AsyncSession, codes: list[str]) -> list[int]:
    wanted = [c.upper() for c in dict.fromkeys(codes)]
    rows = (await db.execute(select(Establishment.code, Establishment.id))).all()
    by_code = dict(rows)
    missing = [c for c in wanted if c not in by_code]
    if missing:
        raise _field_error("establishments", f"unknown establishment {', '.join(missing)}")
    return [by_code[c] for c in wanted]


async def _names(db: AsyncSession) -> tuple[dict[int, Any], dict[int, str]]:
    people = {
        u.id: {"id": u.id, "username": u.username, "display_name": u.display_name}
        for u in (await db.scalars(select(User).where(User.role == Role.RADIOLOGIST))).all()
    }
    codes = dict((await db.execute(select(Establishment.id, Establishment.code))).all())
    return people, codes


def _row_json(row: Shift | ShiftTemplate, people: dict[int, Any], codes: dict[int, str]) -> dict:
    out: dict[str, Any] = {
        "id": row.id,
        "radiologist": people.get(row.radiologist_id, {"id": row.radiologist_id}),
        "role": row.role,
        "establishments": [codes.get(i, str(i)) for i in row.establishment_ids],
        "max_in_progress": row.max_in_progress,
    }
    if isinstance(row, Shift):
        out.update(
            kind=row.kind,
            starts_at=row.starts_at.isoformat(),
            ends_at=row.ends_at.isoformat(),
            note=row.note,
        )
    else:
        out.update(
            pattern=row.pattern,
            start_time=row.start_time,
            end_time=row.end_time,
            valid_from=row.valid_from.isoformat(),
            valid_until=row.valid_until.isoformat() if row.valid_until else None,
        )
    return out


def _time_param(request: Request, name: str, default: datetime) -> datetime:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ApiError(400, "bad_parameter", f"{name} must carry a UTC offset")
    return value


async def _reader(request: Request) -> Principal:
    principal = await authenticate(request)
    require_role(principal, Role.COORDINATOR, Role.RADIOLOGIST)
    return principal


async def list_shifts(request: Request) -> Response:
    await _reader(request)
    app = ctx(request)
    now = app.now()
    start = _time_param(request, "from", now - timedelta(days=1))
    end = _time_param(request, "to", now + timedelta(days=14))
    async with app.read() as db:
        rows = (
            await db.scalars(
                select(Shift)
                .where(Shift.ends_at > start, Shift.starts_at < end)
                .order_by(Shift.starts_at, Shift.id)
            )
        ).all()
        people, codes = await _names(db)
    return JSONResponse({"shifts": [_row_json(r, people, codes) for r in rows]})


async def _create(request: Request, model: type[ShiftBody] | type[TemplateBody]) -> Response:
    principal = await authenticate(request)
    require_role(principal, Role.COORDINATOR)
    body = await parse(request, model)
    app = ctx(request)
    async with app.db() as db:
        user = await _radiologist(db, body.radiologist)
        common: dict[str, Any] = {
            "radiologist_id": user.id,
            "role": body.role,
            "establishment_ids": await _establishment_ids(db, body.establishments),
            "max_in_progress": body.max_in_progress,
            "created_by_id": principal.user.id,
            "created_at": app.now(),
        }
        row: Shift | ShiftTemplate
        if isinstance(body, ShiftBody):
            row = Shift(
                kind=body.kind,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                note=body.note,
                **common,
            )
        else:
            row = ShiftTemplate(
                pattern=body.pattern,
                start_time=body.start_time,
                end_time=body.end_time,
                valid_from=body.valid_from,
                valid_until=body.valid_until,
                **common,
            )
        db.add(row)
        await db.commit()
        people, codes = await _names(db)
        out = _row_json(row, people, codes)
    return JSONResponse(out, status_code=201)


async def create_shift(request: Request) -> Response:
    return await _create(request, ShiftBody)


async def create_template(request: Request) -> Response:
    return await _create(request, TemplateBody)


async def list_templates(request: Request) -> Response:
    await _reader(request)
    app = ctx(request)
    async with app.read() as db:
        rows = (await db.scalars(select(ShiftTemplate).order_by(ShiftTemplate.id))).all()
        people, codes = await _names(db)
    return JSONResponse({"templates": [_row_json(r, people, codes) for r in rows]})


def _delete(model: type[Shift] | type[ShiftTemplate], what: str) -> Any:
    async def endpoint(request: Request) -> Response:
        principal = await authenticate(request)
        require_role(principal, Role.COORDINATOR)
        app = ctx(request)
        raw = request.path_params["row_id"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > ROW_ID_MAX:
            raise not_found(what)
        row_id = int(raw)
        async with app.db() as db:
            row = await db.get(model, row_id)
            if row is None:
                raise not_found(what)
            await db.delete(row)
            await db.commit()
        return Response(status_code=204)

    return endpoint


async def get_roster(request: Request) -> Response:
    """Who is on duty at `at` (default now), per establishment (or one: `establishment`)."""
    await _reader(request)
    app = ctx(request)
    at = _time_param(request, "at", app.now())
    code = request.query_params.get("establishment")
    async with app.read() as db:
        stmt = select(Establishment).order_by(Establishment.code)
        if code:
            stmt = stmt.where(Establishment.code == code.upper())
        establishments = (await db.scalars(stmt)).all()
        if code and not establishments:
            raise not_found("establishment")
        duties = await load_duties(db, at)
        people, _codes = await _names(db)
    out = []
    for est in establishments:
        r = roster_for(duties, est.id)
        out.append(
            {
                "establishment": {"code": est.code, "name": est.name},
                "primary": [duty_json(d, people) for d in r.primary],
                "backup": [duty_json(d, people) for d in r.backup],
            }
        )
    local = at.astimezone(PARIS)
    return JSONResponse(
        {"at": at.isoformat(), "bank_holiday": bank_holiday(local.date()), "establishments": out}
    )


async def list_bank_holidays(request: Request) -> Response:
    await authenticate(request)
    raw = request.query_params.get("year", str(ctx(request).now().year))
    if not raw.isdigit() or not 1583 <= int(raw) <= 9999:
        raise ApiError(400, "bad_parameter", "year must be a Gregorian year")
    days = sorted(bank_holidays(int(raw)).items())
    return JSONResponse({"bank_holidays": [{"date": d.isoformat(), "name": n} for d, n in days]})


routes = [
    Route("/shifts", list_shifts, methods=["GET"]),
    Route("/shifts", create_shift, methods=["POST"]),
    Route("/shifts/{row_id}", _delete(Shift, "shift"), methods=["DELETE"]),
    Route("/shift-templates", list_templates, methods=["GET"]),
    Route("/shift-templates", create_template, methods=["POST"]),
    Route("/shift-templates/{row_id}", _delete(ShiftTemplate, "template"), methods=["DELETE"]),
    Route("/roster", get_roster, methods=["GET"]),
    Route("/bank-holidays", list_bank_holidays, methods=["GET"]),
]
