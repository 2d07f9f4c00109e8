"""What every handler needs, built once by ``create_dicomweb_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from dicomweb import tables as t
from dicomweb.http import base_of
from dicomweb.ingest import Ingestor
from dicomweb.storage import Storage
from dicomweb.types import Access, DicomwebConfig, DicomwebError, Principal


@dataclass
class Context:
    config: DicomwebConfig
    db: async_sessionmaker[AsyncSession]
    access: Access
    storage: Storage
    ingestor: Ingestor

    def base(self, request: Request) -> str:
        return base_of(request, self.config.public_base_url)

    async def scoped_instances(
        self, request: Request, *columns: Any
    ) -> tuple[Principal, list[Any]]:
        """Instances under the path's study/series/instance UIDs the caller may see,
        in series then instance order; 404 when there are none."""
        principal = await self.access.authenticate(request)
        stmt = self.scope(request, principal, columns)
        async with self.db() as session:
            rows = list((await session.execute(stmt)).all())
        if not rows:
            raise DicomwebError(404, "not_found", _what(request) + " not found")
        return principal, rows

    def scope(self, request: Request, principal: Principal, columns: Any) -> Select[Any]:
        p = request.path_params
        conds: list[ColumnElement[bool]] = [t.studies.c.study_uid == p["study"]]
        if "series" in p:
            conds.append(t.series.c.series_uid == p["series"])
        if "instance" in p:
            conds.append(t.instances.c.sop_uid == p["instance"])
        scope = self.access.study_filter(principal)
        if scope is not None:
            conds.append(scope)
        return (
            select(*columns)
            .select_from(
                t.instances.join(t.series, t.instances.c.series_pk == t.series.c.id).join(
                    t.studies, t.instances.c.study_pk == t.studies.c.id
                )
            )
            .where(*conds)
            .order_by(
                t.series.c.series_number,
                t.series.c.id,
                t.instances.c.instance_number,
                t.instances.c.id,
            )
        )


def _what(request: Request) -> str:
    p = request.path_params
    if "instance" in p:
        return f"instance {p['instance']}"
    if "series" in p:
        return f"series {p['series']}"
    return f"study {p['study']}"
